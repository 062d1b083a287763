package kernels

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/hyperat/hyperat/kernels/vmath"
)

// attnLayout is attention on heads read in place, as a ViT lays them out:
// queries, keys and values side by side in one [B, T, 3, H, D] tensor, the
// output and the gradients of q, k and v in the tokens' rows.
type attnLayout struct {
	B, T, H, D int
	q, k, v    Heads // k as the product reads it: K^T, K stored transposed
	o, dqkv    Heads // O in [B, T, H, D]; the gradients' offsets are q's, k's, v's
}

func newAttnLayout(B, T, H, D int) attnLayout {
	l := attnLayout{B: B, T: T, H: H, D: D}
	ld := 3 * H * D
	l.q, l.k, l.v = Heads{LD: ld}, Heads{LD: ld, Trans: true}, Heads{LD: ld}
	l.o = Heads{LD: H * D}
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			base := b*T*ld + h*D
			l.q.Off = append(l.q.Off, base)
			l.k.Off = append(l.k.Off, base+H*D)
			l.v.Off = append(l.v.Off, base+2*H*D)
			l.o.Off = append(l.o.Off, b*T*H*D+h*D)
		}
	}
	return l
}

// Attention and AttentionGrad compute what the products, the softmax and
// its gradient compute one step after the other (SgemmBatchedAt,
// vmath.SoftmaxRows, vmath.SoftmaxGradRows), bit for bit, whatever
// GOMAXPROCS is, with float32 and with bfloat16 products.
func TestAttentionMatchesSteps(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		pr Precision
		sh [4]int
	}{{FP32, [4]int{3, 13, 4, 8}}, {FP32, [4]int{2, 50, 2, 32}}, {FP32, [4]int{1, 197, 2, 64}}, {FP32, [4]int{2, 1, 3, 5}},
		{BF16, [4]int{2, 50, 2, 32}}} {
		pr, sh := c.pr, c.sh
		l := newAttnLayout(sh[0], sh[1], sh[2], sh[3])
		T, D, heads := l.T, l.D, l.B*l.H
		r := rand.New(rand.NewPCG(uint64(T), 3))
		qkv := randSlice(r, l.B*T*3*l.H*D)
		do := randSlice(r, l.B*T*l.H*D)
		const alpha = 0.125
		// the steps apart
		wantP := make([]float32, heads*T*T)
		plain := make([]int, heads)
		for i := range plain {
			plain[i] = i * T * T
		}
		pr.SgemmBatchedAt(heads, false, true, T, T, D, alpha, qkv, l.q.LD, l.q.Off, qkv, l.k.LD, l.k.Off, 0, wantP, T, plain)
		vmath.SoftmaxRows(wantP, wantP, heads*T, T)
		wantO := make([]float32, len(do))
		pr.SgemmBatchedAt(heads, false, false, T, D, T, 1, wantP, T, plain, qkv, l.v.LD, l.v.Off, 0, wantO, l.o.LD, l.o.Off)
		wantG := make([]float32, len(qkv))
		dS := make([]float32, heads*T*T)
		pr.SgemmBatchedAt(heads, true, false, T, D, T, 1, wantP, T, plain, do, l.o.LD, l.o.Off, 0, wantG, l.v.LD, l.v.Off)
		pr.SgemmBatchedAt(heads, false, true, T, T, D, 1, do, l.o.LD, l.o.Off, qkv, l.v.LD, l.v.Off, 0, dS, T, plain)
		vmath.SoftmaxGradRows(dS, wantP, dS, heads*T, T)
		pr.SgemmBatchedAt(heads, false, false, T, D, T, alpha, dS, T, plain, qkv, l.k.LD, l.k.Off, 0, wantG, l.q.LD, l.q.Off)
		pr.SgemmBatchedAt(heads, true, false, T, D, T, alpha, dS, T, plain, qkv, l.q.LD, l.q.Off, 0, wantG, l.q.LD, l.k.Off)
		for _, procs := range []int{1, 2, 4} {
			runtime.GOMAXPROCS(procs)
			o, p, g := nanSlice(len(do)), nanSlice(heads*T*T), nanSlice(len(qkv))
			pr.Attention(heads, T, T, D, D, alpha, qkv, l.q, qkv, l.k, qkv, l.v, nil, nil, o, l.o, p)
			checkSame(t, "O", o, wantO)
			checkSame(t, "P", p, wantP)
			// dK is written through K's transposed view: dB^T
			pr.AttentionGrad(heads, T, T, D, D, alpha, qkv, l.q, qkv, l.k, qkv, l.v, p, do, l.o, g, l.q, g, l.k, g, l.v)
			checkSame(t, "dQKV", g, wantG)
			// without P: the same O
			o2 := nanSlice(len(do))
			pr.Attention(heads, T, T, D, D, alpha, qkv, l.q, qkv, l.k, qkv, l.v, nil, nil, o2, l.o, nil)
			checkSame(t, "O without P", o2, wantO)
		}
	}
}

func nanSlice(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}

// heads64 reads matrix i of op(X), rows×cols, through a view.
func heads64(x []float32, h Heads, i, rows, cols int) [][]float64 {
	out := make([][]float64, rows)
	for r := range out {
		out[r] = make([]float64, cols)
		for c := range out[r] {
			if h.Trans {
				out[r][c] = float64(x[h.Off[i]+c*h.LD+r])
			} else {
				out[r][c] = float64(x[h.Off[i]+r*h.LD+c])
			}
		}
	}
	return out
}

func matmul64(x, y [][]float64, tx, ty bool) [][]float64 {
	get := func(m [][]float64, t bool, i, j int) float64 {
		if t {
			return m[j][i]
		}
		return m[i][j]
	}
	rows, inner, cols := len(x), len(x[0]), len(y[0])
	if tx {
		rows, inner = inner, rows
	}
	if ty {
		cols = len(y)
	}
	out := make([][]float64, rows)
	for i := range out {
		out[i] = make([]float64, cols)
		for j := range out[i] {
			for k := 0; k < inner; k++ {
				out[i][j] += get(x, tx, i, k) * get(y, ty, k, j)
			}
		}
	}
	return out
}

// Every operand may be stored either way round, and every output written
// either way round: the results agree with float64 attention and its
// gradients (the formulas written out) to float32 rounding.
func TestAttentionLayouts(t *testing.T) {
	const heads, m, n, k, dv = 3, 7, 9, 5, 6
	const alpha = 0.3
	r := rand.New(rand.NewPCG(5, 6))
	dims := map[string][2]int{"A": {m, k}, "B": {k, n}, "V": {n, dv}, "O": {m, dv}}
	for mask := 0; mask < 32; mask++ {
		trans := func(bit int) bool { return mask>>bit&1 == 1 }
		// each operand in its own buffer, heads 11 elements apart beyond their span
		mk := func(name string, tr bool) ([]float32, Heads) {
			rows, cols := dims[name][0], dims[name][1]
			if tr {
				rows, cols = cols, rows
			}
			h := Heads{LD: cols + 2, Trans: tr}
			span := (rows-1)*h.LD + cols + 11
			for i := 0; i < heads; i++ {
				h.Off = append(h.Off, 3+i*span)
			}
			return randSlice(r, 3+heads*span), h
		}
		a, ah := mk("A", trans(0))
		b, bh := mk("B", trans(1))
		v, vh := mk("V", trans(2))
		o, oh := mk("O", trans(3))
		do, doh := mk("O", trans(4))
		da, dah := mk("A", trans(3))
		db, dbh := mk("B", !trans(1))
		dvv, dvh := mk("V", trans(4))
		p := make([]float32, heads*m*n)
		Attention(heads, m, n, k, dv, alpha, a, ah, b, bh, v, vh, nil, nil, o, oh, p)
		AttentionGrad(heads, m, n, k, dv, alpha, a, ah, b, bh, v, vh, p, do, doh, da, dah, db, dbh, dvv, dvh)
		for i := 0; i < heads; i++ {
			A, B, V := heads64(a, ah, i, m, k), heads64(b, bh, i, k, n), heads64(v, vh, i, n, dv)
			dO := heads64(do, doh, i, m, dv)
			P := matmul64(A, B, false, false)
			for _, row := range P {
				mx := math.Inf(-1)
				for j := range row {
					row[j] *= alpha
					mx = max(mx, row[j])
				}
				s := 0.0
				for j := range row {
					row[j] = math.Exp(row[j] - mx)
					s += row[j]
				}
				for j := range row {
					row[j] /= s
				}
			}
			dP := matmul64(dO, V, false, true)
			dS := make([][]float64, m)
			for x := range dS {
				dot := 0.0
				for y := 0; y < n; y++ {
					dot += dP[x][y] * P[x][y]
				}
				dS[x] = make([]float64, n)
				for y := 0; y < n; y++ {
					dS[x][y] = alpha * P[x][y] * (dP[x][y] - dot)
				}
			}
			for _, c := range []struct {
				name string
				got  [][]float64
				want [][]float64
			}{
				{"O", heads64(o, oh, i, m, dv), matmul64(P, V, false, false)},
				{"P", heads64(p, Heads{Off: []int{i * m * n}, LD: n}, 0, m, n), P},
				{"dV", heads64(dvv, dvh, i, n, dv), matmul64(P, dO, true, false)},
				{"dA", heads64(da, dah, i, m, k), matmul64(dS, B, false, true)},
				{"dB", heads64(db, dbh, i, k, n), matmul64(A, dS, true, false)},
			} {
				for x := range c.want {
					for y := range c.want[x] {
						if d := math.Abs(c.got[x][y] - c.want[x][y]); d > 1e-5*(1+math.Abs(c.want[x][y])) {
							t.Fatalf("layout %05b head %d: %s[%d,%d] = %g, want %g", mask, i, c.name, x, y, c.got[x][y], c.want[x][y])
						}
					}
				}
			}
		}
	}
}

// A nil gradient is not computed, and the others are the same.
func TestAttentionGradSubset(t *testing.T) {
	l := newAttnLayout(2, 11, 3, 4)
	heads := l.B * l.H
	r := rand.New(rand.NewPCG(7, 8))
	qkv := randSlice(r, l.B*l.T*3*l.H*l.D)
	do := randSlice(r, l.B*l.T*l.H*l.D)
	o, p := make([]float32, len(do)), make([]float32, heads*l.T*l.T)
	Attention(heads, l.T, l.T, l.D, l.D, 0.5, qkv, l.q, qkv, l.k, qkv, l.v, nil, nil, o, l.o, p)
	all := make([]float32, len(qkv))
	AttentionGrad(heads, l.T, l.T, l.D, l.D, 0.5, qkv, l.q, qkv, l.k, qkv, l.v, p, do, l.o, all, l.q, all, l.k, all, l.v)
	onlyV := nanSlice(len(qkv))
	AttentionGrad(heads, l.T, l.T, l.D, l.D, 0.5, qkv, l.q, qkv, l.k, qkv, l.v, p, do, l.o, nil, l.q, nil, l.k, onlyV, l.v)
	onlyQ := nanSlice(len(qkv))
	AttentionGrad(heads, l.T, l.T, l.D, l.D, 0.5, qkv, l.q, qkv, l.k, qkv, l.v, p, do, l.o, onlyQ, l.q, nil, l.k, nil, l.v)
	for i := range heads {
		for x := 0; x < l.T; x++ {
			for y := 0; y < l.D; y++ {
				q, v := l.q.Off[i]+x*l.q.LD+y, l.v.Off[i]+x*l.v.LD+y
				if onlyV[v] != all[v] || onlyQ[q] != all[q] || !math.IsNaN(float64(onlyV[q])) || !math.IsNaN(float64(onlyQ[v])) {
					t.Fatalf("head %d row %d col %d: the gradients computed alone differ, or one not asked for was written", i, x, y)
				}
			}
		}
	}
}

// Short operands panic with the kernel's name, before anything is written.
func TestAttentionPanics(t *testing.T) {
	l := newAttnLayout(1, 4, 1, 2)
	qkv := make([]float32, 4*3*2)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic on a short output")
		}
	}()
	Attention(1, 4, 4, 2, 2, 1, qkv, l.q, qkv, l.k, qkv, l.v, nil, nil, make([]float32, 7), l.o, nil)
}

// Running allocates nothing once the buffers exist.
func TestAttentionNoAllocs(t *testing.T) {
	l := newAttnLayout(2, 20, 2, 8)
	heads := l.B * l.H
	qkv := randSlice(rand.New(rand.NewPCG(1, 1)), l.B*l.T*3*l.H*l.D)
	o, p, g := make([]float32, l.B*l.T*l.H*l.D), make([]float32, heads*l.T*l.T), make([]float32, len(qkv))
	run := func() {
		Attention(heads, l.T, l.T, l.D, l.D, 0.5, qkv, l.q, qkv, l.k, qkv, l.v, nil, nil, o, l.o, p)
		AttentionGrad(heads, l.T, l.T, l.D, l.D, 0.5, qkv, l.q, qkv, l.k, qkv, l.v, p, o, l.o, g, l.q, g, l.k, g, l.v)
	}
	run()
	if a := testing.AllocsPerRun(20, run); a > 0 {
		t.Fatalf("%v allocations per run", a)
	}
}

// A bias added to the scores (one matrix per head, shared here by heads of
// the same index, as a position bias is across the batch) is added as an
// addition of its own would add it, before the softmax: bit for bit the
// steps apart.
func TestAttentionBias(t *testing.T) {
	l := newAttnLayout(3, 17, 2, 8)
	T, D, heads := l.T, l.D, l.B*l.H
	r := rand.New(rand.NewPCG(9, 10))
	qkv := randSlice(r, l.B*T*3*l.H*D)
	bias := randSlice(r, l.H*T*T)
	biasOff := make([]int, heads)
	plain := make([]int, heads)
	for i := range biasOff {
		biasOff[i], plain[i] = (i%l.H)*T*T, i*T*T
	}
	wantP := make([]float32, heads*T*T)
	SgemmBatchedAt(heads, false, true, T, T, D, 0.25, qkv, l.q.LD, l.q.Off, qkv, l.k.LD, l.k.Off, 0, wantP, T, plain)
	for i := range heads {
		s := wantP[i*T*T : (i+1)*T*T]
		for j := range s {
			s[j] += bias[biasOff[i]+j]
		}
	}
	vmath.SoftmaxRows(wantP, wantP, heads*T, T)
	wantO := make([]float32, l.B*T*l.H*D)
	SgemmBatchedAt(heads, false, false, T, D, T, 1, wantP, T, plain, qkv, l.v.LD, l.v.Off, 0, wantO, l.o.LD, l.o.Off)
	o, p := nanSlice(len(wantO)), nanSlice(len(wantP))
	Attention(heads, T, T, D, D, 0.25, qkv, l.q, qkv, l.k, qkv, l.v, bias, biasOff, o, l.o, p)
	checkSame(t, "P", p, wantP)
	checkSame(t, "O", o, wantO)
}

// Empty dims: no queries leave the gradients of the keys and values zero,
// no keys the output and the queries' gradient zero.
func TestAttentionEmpty(t *testing.T) {
	const heads, k, dv = 2, 3, 4
	for _, mn := range [][2]int{{0, 5}, {5, 0}} {
		m, n := mn[0], mn[1]
		plain := func(cols int) Heads { return Heads{Off: []int{0, 20}, LD: max(cols, 1)} }
		a, b, v := make([]float32, 40), make([]float32, 40), make([]float32, 40)
		o, p, do := nanSlice(40), nanSlice(heads*m*n), make([]float32, 40)
		da, db, dvv := nanSlice(40), nanSlice(40), nanSlice(40)
		Attention(heads, m, n, k, dv, 1, a, plain(k), b, plain(n), v, plain(dv), nil, nil, o, plain(dv), p)
		AttentionGrad(heads, m, n, k, dv, 1, a, plain(k), b, plain(n), v, plain(dv), p, do, plain(dv), da, plain(k), db, plain(n), dvv, plain(dv))
		for h := range heads {
			for _, c := range []struct {
				name       string
				x          []float32
				rows, cols int
			}{{"O", o, m, dv}, {"dA", da, m, k}, {"dB", db, k, n}, {"dV", dvv, n, dv}} {
				for i := 0; i < c.rows*c.cols; i++ {
					if x := c.x[20*h+i/c.cols*max(c.cols, 1)+i%c.cols]; x != 0 {
						t.Fatalf("m %d, n %d: head %d: %s[%d] = %v, want 0", m, n, h, c.name, i, x)
					}
				}
			}
		}
	}
}

// TestPrefetchRows runs the prefetch over the edges of a buffer (the last
// row ending at the last element, rows of one float, nothing at all): it
// must neither fault nor change the data.
func TestPrefetchRows(t *testing.T) {
	x := make([]float32, 7*48+33)
	for i := range x {
		x[i] = float32(i)
	}
	for _, c := range [][3]int{{8, 48, 33}, {1, 0, len(x)}, {len(x), 1, 1}, {0, 48, 33}, {8, 48, 0}, {3, 16, 16}} {
		prefetchRows(x, c[0], c[1], c[2])
	}
	for i, v := range x {
		if v != float32(i) {
			t.Fatalf("x[%d] = %v after the prefetch, want %d", i, v, i)
		}
	}
}
