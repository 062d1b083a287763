package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// guard fills the unused parts of test buffers; a kernel that writes it
// writes out of bounds.
const guard = float32(-7777.25)

// guardLen is the number of guard values before and after each matrix.
const guardLen = 19

// testMatrix is a rows×cols matrix stored ld apart inside a buffer whose
// other elements are guard values.
type testMatrix struct {
	buf        []float32
	rows, cols int
	ld         int
}

func newTestMatrix(r *rand.Rand, rows, cols, ld int, fill func() float32) testMatrix {
	span := 0
	if rows > 0 && cols > 0 {
		span = (rows-1)*ld + cols
	}
	m := testMatrix{buf: make([]float32, span+2*guardLen), rows: rows, cols: cols, ld: ld}
	for i := range m.buf {
		m.buf[i] = guard
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			m.buf[guardLen+i*ld+j] = fill()
		}
	}
	return m
}

// data is the slice handed to the kernel: from the first element to the
// last, with no slack, so that reading past the end panics in Go code.
func (m testMatrix) data() []float32 {
	return m.buf[guardLen : len(m.buf)-guardLen]
}

func (m testMatrix) at(i, j int) float32 { return m.buf[guardLen+i*m.ld+j] }

// checkGuards reports any guard value that changed.
func (m testMatrix) checkGuards(t *testing.T, name string) {
	t.Helper()
	inside := func(x int) bool {
		x -= guardLen
		if x < 0 || m.rows == 0 || m.cols == 0 {
			return false
		}
		i, j := x/m.ld, x%m.ld
		return i < m.rows && j < m.cols
	}
	for x, v := range m.buf {
		if !inside(x) && math.Float32bits(v) != math.Float32bits(guard) {
			t.Fatalf("%s: guard at offset %d overwritten with %v", name, x-guardLen, v)
		}
	}
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	padA, padB     int // extra columns in the leading dimensions
	padC           int
}

func (c gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s/m%d_n%d_k%d/alpha%g_beta%g/pad%d_%d_%d",
		t(c.transA), t(c.transB), c.m, c.n, c.k, c.alpha, c.beta, c.padA, c.padB, c.padC)
}

// checkGemmCase runs one product with run and compares it with a float64
// reference, element by element, within the float32 rounding bound.
func checkGemmCase(t *testing.T, r *rand.Rand, cs gemmCase, run func(g *gemmArgs)) {
	t.Helper()
	uniform := func() float32 { return float32(r.Float64()*2 - 1) }
	ra, ca := cs.m, cs.k
	if cs.transA {
		ra, ca = ca, ra
	}
	rb, cb := cs.k, cs.n
	if cs.transB {
		rb, cb = cb, rb
	}
	a := newTestMatrix(r, ra, ca, max(1, ca+cs.padA), uniform)
	b := newTestMatrix(r, rb, cb, max(1, cb+cs.padB), uniform)
	fillC := uniform
	if cs.beta == 0 {
		fillC = func() float32 { return float32(math.NaN()) }
	}
	c := newTestMatrix(r, cs.m, cs.n, max(1, cs.n+cs.padC), fillC)
	a0 := append([]float32(nil), a.buf...)
	b0 := append([]float32(nil), b.buf...)
	c0 := append([]float32(nil), c.buf...)
	opA := func(i, p int) float32 {
		if cs.transA {
			return a.at(p, i)
		}
		return a.at(i, p)
	}
	opB := func(p, j int) float32 {
		if cs.transB {
			return b.at(j, p)
		}
		return b.at(p, j)
	}

	run(&gemmArgs{
		transA: cs.transA, transB: cs.transB, m: cs.m, n: cs.n, k: cs.k,
		alpha: cs.alpha, beta: cs.beta,
		a: a.data(), lda: a.ld, b: b.data(), ldb: b.ld, c: c.data(), ldc: c.ld,
	})

	for _, in := range []struct{ before, after []float32 }{{a0, a.buf}, {b0, b.buf}} {
		for x := range in.before {
			if math.Float32bits(in.before[x]) != math.Float32bits(in.after[x]) {
				t.Fatalf("%v: an input was modified", cs)
			}
		}
	}
	c.checkGuards(t, cs.String())
	// Each product, sum and scaling rounds once with relative error at most
	// u = 2^-24, so |computed - exact| <= (k+2)*u*(|alpha|*sum|a*b| + |beta*c|)
	// to first order; a factor 2 covers the higher-order terms.
	const u = 1.0 / (1 << 24)
	for i := 0; i < cs.m; i++ {
		for j := 0; j < cs.n; j++ {
			var s, abs float64
			for p := 0; p < cs.k; p++ {
				x := float64(opA(i, p)) * float64(opB(p, j))
				s += x
				abs += math.Abs(x)
			}
			want := float64(cs.alpha) * s
			bound := math.Abs(float64(cs.alpha)) * abs
			if cs.beta != 0 {
				old := float64(c0[guardLen+i*c.ld+j])
				want += float64(cs.beta) * old
				bound += math.Abs(float64(cs.beta) * old)
			}
			bound = 2*float64(cs.k+2)*u*bound + 1e-30
			got := c.at(i, j)
			if math.IsNaN(float64(got)) || math.Abs(float64(got)-want) > bound {
				t.Fatalf("%v: C[%d,%d] = %v, want %v (bound %.3g)", cs, i, j, got, want, bound)
			}
		}
	}
}

// gemmCases is the sweep every variant must pass: each dimension from 0 to
// past the tiles and blocks, every transpose combination, and the special
// alpha and beta values.
func gemmCases(short bool) []gemmCase {
	type ab struct{ alpha, beta float32 }
	scalars := []ab{{1, 0}, {0.5, 2}, {-1.5, 1}, {1, -0.25}, {2, 0}}
	var sizes [][3]int
	top := 70
	if short {
		top = 40
	}
	for s := 0; s <= top; s++ {
		sizes = append(sizes, [3]int{s, 17, 33}, [3]int{29, s, 40}, [3]int{45, 37, s}, [3]int{s, s, s})
	}
	sizes = append(sizes,
		[3]int{257, 385, 129}, // past every tile, two k blocks for 14x32
		[3]int{30, 1100, 20},  // past the n block
		[3]int{15, 40, 600},   // several k blocks
		[3]int{1, 1, 1000},
		[3]int{100, 1, 3},
	)
	var cases []gemmCase
	for x, s := range sizes {
		for tr := 0; tr < 4; tr++ {
			sc := scalars[(x+tr)%len(scalars)]
			cases = append(cases, gemmCase{
				transA: tr&1 != 0, transB: tr&2 != 0,
				m: s[0], n: s[1], k: s[2], alpha: sc.alpha, beta: sc.beta,
				padA: (x + tr) % 3, padB: (x + 2*tr) % 4, padC: (x + 3*tr) % 5,
			})
		}
	}
	cases = append(cases,
		gemmCase{m: 20, n: 30, k: 10, alpha: 0, beta: 0.5, padC: 2},
		gemmCase{m: 20, n: 30, k: 10, alpha: 0, beta: 0, padC: 2},
		gemmCase{m: 20, n: 30, k: 0, alpha: 1, beta: 3},
		gemmCase{transA: true, m: 20, n: 30, k: 0, alpha: 1, beta: 0, padA: 1},
	)
	return cases
}

// testVariants are the variants this CPU runs, each with its kernel and, for
// the assembly ones, with its plain-Go twin in the same driver.
func testVariants() []*sgemmVariant {
	var vs []*sgemmVariant
	for _, v := range sgemmVariants {
		if !v.supported {
			continue
		}
		vs = append(vs, v)
		if v != goVariant {
			twin := *v
			twin.name += "-twin"
			twin.kernels = nil
			for _, k := range v.kernels {
				twin.kernels = append(twin.kernels, tileKernel{mr: k.mr, kernel: k.twin, twin: k.twin})
			}
			vs = append(vs, newVariant(twin))
		}
	}
	return vs
}

func TestSgemmVariants(t *testing.T) {
	for _, v := range testVariants() {
		t.Run(v.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			for _, cs := range gemmCases(testing.Short()) {
				checkGemmCase(t, r, cs, func(g *gemmArgs) { v.gemm(g, true) })
			}
		})
	}
}

// TestSgemmSplit runs the sweep with every product split for 3, 16 and 64
// threads, however small, so that every way of splitting (shared B blocks
// with chunks of rows or a grid of rows and columns, and tasks owning
// columns) meets every edge.
func TestSgemmSplit(t *testing.T) {
	for _, v := range testVariants() {
		for _, threads := range []int{3, 16, 64} {
			t.Run(fmt.Sprintf("%s/%d", v.name, threads), func(t *testing.T) {
				r := rand.New(rand.NewPCG(19, 20))
				for _, cs := range gemmCases(true) {
					checkGemmCase(t, r, cs, func(g *gemmArgs) {
						p := plans.get()
						p.gemm(v, g, threads)
						plans.put(p)
					})
				}
			})
		}
	}
}

// TestSgemmSplitModes checks that the shapes of the transformers' products
// take the split meant for them: on many threads, a tall C with few
// columns is cut into a grid of rows and columns instead of a few column
// tasks, and a short, wide C keeps tasks owning columns.
func TestSgemmSplitModes(t *testing.T) {
	v := activeSgemm
	for _, c := range []struct {
		m, n, threads int
		columns       bool
		minTasks      int
	}{
		{m: 3200, n: 128, threads: 2, minTasks: 32},   // by rows, as before
		{m: 3200, n: 128, threads: 64, minTasks: 128}, // was 2 column tasks
		{m: 1576, n: 768, threads: 16, minTasks: 64},  // was 12 column tasks
		{m: 128, n: 512, threads: 64, minTasks: 64},   // a weight gradient
		{m: 128, n: 4096, threads: 8, columns: true, minTasks: 32},
		{m: 64, n: 512, threads: 2, columns: true, minTasks: 8},
	} {
		p := plans.get()
		p.init(v, &gemmArgs{m: c.m, n: c.n, k: 512, lda: 512, ldb: c.n, ldc: c.n, alpha: 1}, c.threads)
		tasks := p.mParts * p.nParts
		if p.columns != c.columns || tasks < c.minTasks {
			t.Errorf("%dx%d on %d threads: columns %v with %d tasks, want columns %v with at least %d",
				c.m, c.n, c.threads, p.columns, tasks, c.columns, c.minTasks)
		}
		p.v, p.g = nil, gemmArgs{}
		plans.put(p)
	}
}

// TestSgemmSmallBlocks runs each variant with tiny blocks so that the loops
// over the k and n blocks run many times even on small matrices.
func TestSgemmSmallBlocks(t *testing.T) {
	for _, v := range testVariants() {
		w := *v
		w.kc, w.nc = 7, 2*v.nr
		t.Run(v.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			for _, cs := range gemmCases(true) {
				if cs.m*cs.n*cs.k > 1e6 {
					continue
				}
				checkGemmCase(t, r, cs, func(g *gemmArgs) { w.gemm(g, false) })
			}
		})
	}
}

func TestSgemmPublic(t *testing.T) {
	t.Logf("active variant: %s", activeSgemm.name)
	r := rand.New(rand.NewPCG(5, 6))
	for _, cs := range gemmCases(true) {
		checkGemmCase(t, r, cs, func(g *gemmArgs) {
			Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
		})
	}
}

// TestMicroKernels compares each kernel with its plain-Go twin on every tile
// shape, with C surrounded by guard values.
func TestMicroKernels(t *testing.T) {
	for _, v := range sgemmVariants {
		if !v.supported {
			continue
		}
		for _, tk := range v.kernels {
			t.Run(fmt.Sprintf("%s/%dx%d", v.name, tk.mr, v.nr), func(t *testing.T) { testMicroKernel(t, tk, v.nr) })
		}
	}
}

func testMicroKernel(t *testing.T, tk tileKernel, nr int) {
	r := rand.New(rand.NewPCG(7, 8))
	mr := tk.mr
	for _, k := range []int{1, 2, 3, 4, 5, 7, 8, 9, 33} {
		for _, st := range stores {
			// Row-major A with a row pitch, and k-major A.
			for _, layout := range [][2]int{{k + 3, 1}, {1, mr + 2}} {
				rs, ks := layout[0], layout[1]
				a := randSlice(r, (mr-1)*rs+(k-1)*ks+1)
				b := randSlice(r, k*nr)
				for rows := 1; rows <= mr; rows++ {
					for cols := 1; cols <= nr; cols++ {
						checkMicroKernel(t, r, tk, k, a, rs, ks, b, st, rows, cols)
					}
				}
			}
		}
	}
}

// store is how a micro-kernel test stores its tile: C = alpha*AB + beta*C,
// or with a bias row (beta then ignored) alpha*AB + bias.
type store struct {
	beta float32
	bias bool
}

var stores = []store{{0, false}, {1, false}, {-0.5, false}, {0, true}, {1, true}}

// biasFor returns a bias row of exactly cols values for st (nil without),
// and C's fill: NaN where the kernel must not read C.
func (st store) biasFor(r *rand.Rand, cols int) ([]float32, func() float32) {
	fill := func() float32 { return float32(r.NormFloat64()) }
	if st.beta == 0 || st.bias {
		fill = func() float32 { return float32(math.NaN()) }
	}
	if !st.bias {
		return nil, fill
	}
	return randSlice(r, cols), fill
}

// checkBiasIsBetaOne fails unless kernel's tile with bias has the bits of
// the same tile computed from C filled with the bias and beta 1 (what
// SgemmBias promises).
func checkBiasIsBetaOne(t *testing.T, name string, kernel microKernel, k int, a []float32, rs, ks int, b []float32, bias []float32, got testMatrix) {
	t.Helper()
	ref := testMatrix{buf: append([]float32(nil), got.buf...), rows: got.rows, cols: got.cols, ld: got.ld}
	for i := 0; i < got.rows; i++ {
		copy(ref.data()[i*ref.ld:i*ref.ld+ref.cols], bias)
	}
	kernel(k, a, rs, ks, b, ref.data(), ref.ld, 1.5, 1, nil, got.rows, got.cols)
	if x, ok := sameBits(got.buf, ref.buf); !ok {
		t.Fatalf("%s: with the bias [%d] = %#08x, from C = bias with beta 1 %#08x", name, x, math.Float32bits(got.buf[x]), math.Float32bits(ref.buf[x]))
	}
}

func checkMicroKernel(t *testing.T, r *rand.Rand, tk tileKernel, k int, a []float32, rs, ks int, b []float32, st store, rows, cols int) {
	t.Helper()
	ldc := cols + 5
	bias, fill := st.biasFor(r, cols)
	want := newTestMatrix(r, rows, cols, ldc, fill)
	got := testMatrix{buf: append([]float32(nil), want.buf...), rows: rows, cols: cols, ld: ldc}
	tk.twin(k, a, rs, ks, b, want.data(), ldc, 1.5, st.beta, bias, rows, cols)
	tk.kernel(k, a, rs, ks, b, got.data(), ldc, 1.5, st.beta, bias, rows, cols)
	name := fmt.Sprintf("k%d %+v rs%d ks%d %dx%d", k, st, rs, ks, rows, cols)
	got.checkGuards(t, name)
	if bias != nil {
		checkBiasIsBetaOne(t, name, tk.kernel, k, a, rs, ks, b, bias, got)
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			w, g := want.at(i, j), got.at(i, j)
			if d := math.Abs(float64(w - g)); !(d <= 1e-5*float64(k)*(1+math.Abs(float64(w)))) {
				t.Fatalf("%s: C[%d,%d] = %v, twin gives %v", name, i, j, g, w)
			}
		}
	}
}

// TestSgemmDeterministic checks that results do not depend on GOMAXPROCS:
// each element is computed by the same operations whichever goroutine
// computes it.
func TestSgemmDeterministic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	shapes := []gemmCase{
		{m: 397, n: 211, k: 700, alpha: 1, beta: 0},
		{transA: true, m: 130, n: 900, k: 301, alpha: 0.5, beta: 1},
		{transB: true, m: 1000, n: 60, k: 130, alpha: 1, beta: 0},
		{transA: true, transB: true, m: 77, n: 333, k: 555, alpha: -1, beta: 2},
		{m: 3200, n: 128, k: 200, alpha: 1, beta: 0},             // chunks of rows
		{transB: true, m: 230, n: 96, k: 300, alpha: 1, beta: 1}, // a grid of rows and columns on 8 threads
		{m: 200, n: 64, k: 100, alpha: 1, beta: 0},               // split on 8 threads only
	}
	for _, v := range testVariants() {
		for _, cs := range shapes {
			r := rand.New(rand.NewPCG(9, 10))
			ra, ca := cs.m, cs.k
			if cs.transA {
				ra, ca = ca, ra
			}
			rb, cb := cs.k, cs.n
			if cs.transB {
				rb, cb = cb, rb
			}
			a := randSlice(r, ra*ca)
			b := randSlice(r, rb*cb)
			c0 := randSlice(r, cs.m*cs.n)
			var ref []float32
			for _, procs := range []int{1, 2, 4, 3, 8} {
				runtime.GOMAXPROCS(procs)
				for rep := 0; rep < 2; rep++ {
					c := append([]float32(nil), c0...)
					v.gemm(&gemmArgs{transA: cs.transA, transB: cs.transB, m: cs.m, n: cs.n, k: cs.k,
						alpha: cs.alpha, beta: cs.beta, a: a, lda: ca, b: b, ldb: cb, c: c, ldc: cs.n}, true)
					if ref == nil {
						ref = c
						continue
					}
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(ref[i]) {
							t.Fatalf("%s %v: GOMAXPROCS %d gives C[%d] = %v, GOMAXPROCS 1 gave %v", v.name, cs, procs, i, c[i], ref[i])
						}
					}
				}
			}
		}
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func TestSgemmBatched(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(11, 12))
	type bcase struct {
		batch          int
		transA, transB bool
		m, n, k        int
		broadcastA     bool
	}
	for _, bc := range []bcase{
		{batch: 12, m: 50, n: 50, k: 32},
		{batch: 12, transB: true, m: 50, n: 50, k: 32},
		{batch: 7, transA: true, m: 33, n: 20, k: 50},
		{batch: 5, m: 19, n: 64, k: 19, broadcastA: true},
		{batch: 1, m: 200, n: 64, k: 197},
		{batch: 3, transA: true, transB: true, m: 197, n: 64, k: 197},
		{batch: 4, m: 5, n: 6, k: 0},
	} {
		ra, ca := bc.m, bc.k
		if bc.transA {
			ra, ca = ca, ra
		}
		rb, cb := bc.k, bc.n
		if bc.transB {
			rb, cb = cb, rb
		}
		lda, ldb := max(1, ca), max(1, cb)
		// Interleave the batch in the columns of C, as attention heads do:
		// row stride batch*n, matrix stride n.
		strideA := ra * ca
		if bc.broadcastA {
			strideA = 0
		}
		a := randSlice(r, ra*ca*bc.batch)
		b := randSlice(r, rb*cb*bc.batch)
		ldc := bc.n * bc.batch
		var ref []float32
		for _, procs := range []int{1, 2, 4} {
			runtime.GOMAXPROCS(procs)
			c := make([]float32, bc.m*ldc)
			for i := range c {
				c[i] = float32(math.NaN())
			}
			SgemmBatched(bc.batch, bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a, lda, strideA, b, ldb, rb*cb, 0, c, ldc, bc.n)
			if ref == nil {
				ref = c
				// Compare with one Sgemm per matrix.
				for i := 0; i < bc.batch; i++ {
					want := make([]float32, bc.m*bc.n)
					Sgemm(bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a[i*strideA:], lda, b[i*rb*cb:], ldb, 0, want, bc.n)
					for x := 0; x < bc.m; x++ {
						for y := 0; y < bc.n; y++ {
							if g, w := c[x*ldc+i*bc.n+y], want[x*bc.n+y]; math.Float32bits(g) != math.Float32bits(w) {
								t.Fatalf("%+v: matrix %d C[%d,%d] = %v, Sgemm gives %v", bc, i, x, y, g, w)
							}
						}
					}
				}
				continue
			}
			for i := range c {
				if math.Float32bits(c[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("%+v: GOMAXPROCS %d differs at %d", bc, procs, i)
				}
			}
		}
	}
}

func TestSgemmPanics(t *testing.T) {
	a := make([]float32, 6)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"short A", func() { Sgemm(false, false, 2, 3, 4, 1, a, 4, make([]float32, 12), 3, 0, make([]float32, 6), 3) }},
		{"short B", func() { Sgemm(false, false, 2, 3, 3, 1, a, 3, make([]float32, 8), 3, 0, make([]float32, 6), 3) }},
		{"short C", func() { Sgemm(false, false, 2, 3, 3, 1, a, 3, make([]float32, 9), 3, 0, make([]float32, 5), 3) }},
		{"small lda", func() { Sgemm(true, false, 3, 3, 2, 1, a, 2, make([]float32, 9), 3, 0, make([]float32, 9), 3) }},
		{"negative", func() { Sgemm(false, false, -1, 3, 2, 1, a, 2, a, 3, 0, a, 3) }},
		{"batch short C", func() {
			SgemmBatched(2, false, false, 2, 2, 2, 1, a, 2, 0, a, 2, 0, 0, make([]float32, 7), 2, 4)
		}},
		{"batch strideC 0", func() { SgemmBatched(2, false, false, 2, 2, 2, 1, a, 2, 0, a, 2, 0, 0, a, 2, 0) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			tc.fn()
		}()
	}
}

func TestSgemmNoAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, sz := range [][3]int{{40, 50, 30}, {300, 400, 200}} {
		m, n, k := sz[0], sz[1], sz[2]
		a, b, c := randSlice(r, m*k), randSlice(r, k*n), randSlice(r, m*n)
		for _, tr := range []bool{false, true} {
			lda, ldb := k, n
			if tr {
				lda, ldb = m, k
			}
			run := func() { Sgemm(tr, tr, m, n, k, 1, a, lda, b, ldb, 0, c, n) }
			run()
			if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
				t.Errorf("Sgemm %dx%dx%d trans %v: %v allocations per call", m, n, k, tr, allocs)
			}
		}
		run := func() { SgemmBatched(4, false, true, m/4, n/4, k, 1, a, k, m/4*k, b, k, 0, 0, c, n/4, m/4*n/4) }
		run()
		if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
			t.Errorf("SgemmBatched: %v allocations per call", allocs)
		}
	}
}

func TestParallelFor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2, 3, 8} {
		runtime.GOMAXPROCS(procs)
		for _, n := range []int{0, 1, 2, 5, 100} {
			hits := make([]int32, n)
			ParallelFor(n, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					hits[i]++
				}
				// Nested calls must not deadlock.
				ParallelFor(3, func(lo, hi int) {})
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("GOMAXPROCS %d n %d: index %d visited %d times", procs, n, i, h)
				}
			}
		}
	}
}

// TestPackB compares the assembly packers with their twins, with guard
// values after the packed panels.
func TestPackB(t *testing.T) {
	for _, v := range sgemmVariants {
		if !v.supported {
			continue
		}
		nr := v.nr
		twinPlain, twinTrans := packB32Go, packBTrans32Go
		if nr == 16 {
			twinPlain, twinTrans = packB16Go, packBTrans16Go
		}
		r := rand.New(rand.NewPCG(15, 16))
		for _, k := range []int{1, 3, 16, 32, 48, 400} {
			for _, extra := range []int{0, 1, 17, 2 * k} {
				if v.packBPlain != nil {
					for _, panels := range []int{1, 3} {
						ldb := panels*nr + extra
						src := randSlice(r, (k-1)*ldb+panels*nr)
						pstride := k*nr + extra
						size := (panels-1)*pstride + k*nr
						want := make([]float32, size+guardLen)
						got := make([]float32, size+guardLen)
						for i := range got {
							got[i], want[i] = guard, guard
						}
						twinPlain(want, src, ldb, k, panels, pstride)
						v.packBPlain(got, src, ldb, k, panels, pstride)
						checkSame(t, fmt.Sprintf("%s plain k %d ldb %d panels %d", v.name, k, ldb, panels), got, want)
					}
				}
				if v.packBTrans != nil && k%16 == 0 {
					// nr rows of k values.
					ldb := k + extra
					src := randSlice(r, (nr-1)*ldb+k)
					for _, cols := range []int{nr, nr - 1, nr/2 + 1, nr / 2, nr/2 - 1, 1, 0} {
						want := make([]float32, k*nr+guardLen)
						got := make([]float32, k*nr+guardLen)
						for i := range got {
							got[i], want[i] = guard, guard
						}
						twinTrans(want, src, ldb, k, cols)
						v.packBTrans(got, src, ldb, k, cols)
						checkSame(t, fmt.Sprintf("%s trans k %d ldb %d cols %d", v.name, k, ldb, cols), got, want)
					}
				}
			}
		}
	}
}

// checkSame fails unless got and want hold the same bits.
func checkSame(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: [%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}

// TestSgemmBias checks that the bias epilogue gives exactly what filling C
// with the bias and adding the product (beta 1) gives, on every variant, with
// small blocks (several k and n blocks), serially and split over goroutines.
func TestSgemmBias(t *testing.T) {
	for _, v := range testVariants() {
		for _, small := range []bool{false, true} {
			w := *v
			if small {
				w.kc, w.nc = 7, 2*v.nr
			}
			t.Run(fmt.Sprintf("%s/small=%v", v.name, small), func(t *testing.T) {
				r := rand.New(rand.NewPCG(9, 10))
				for _, cs := range gemmCases(true) {
					if cs.m*cs.n*cs.k > 1e6 {
						continue
					}
					ra, ca := cs.m, cs.k
					if cs.transA {
						ra, ca = ca, ra
					}
					rb, cb := cs.k, cs.n
					if cs.transB {
						rb, cb = cb, rb
					}
					u := func(n int) []float32 {
						x := make([]float32, n)
						for i := range x {
							x[i] = float32(r.Float64()*2 - 1)
						}
						return x
					}
					a, b, bias := u(max(1, ra*ca)), u(max(1, rb*cb)), u(cs.n)
					ldc := cs.n + cs.padC
					want := make([]float32, cs.m*max(ldc, 1))
					got := make([]float32, len(want))
					for i := range got {
						got[i] = float32(math.NaN()) // C is only written
					}
					for i := 0; i < cs.m; i++ {
						copy(want[i*ldc:], bias)
					}
					args := func(c []float32, beta float32, bs []float32) *gemmArgs {
						return &gemmArgs{transA: cs.transA, transB: cs.transB, m: cs.m, n: cs.n, k: cs.k,
							alpha: cs.alpha, beta: beta, a: a, lda: max(1, ca), b: b, ldb: max(1, cb), c: c, ldc: max(1, ldc), bias: bs}
					}
					for _, par := range []bool{false, true} {
						w.gemm(args(want, 1, nil), par)
						w.gemm(args(got, 0, bias), par)
						for i := 0; i < cs.m; i++ {
							for j := 0; j < cs.n; j++ {
								if g, e := got[i*ldc+j], want[i*ldc+j]; math.Float32bits(g) != math.Float32bits(e) {
									t.Fatalf("%+v parallel=%v: C[%d,%d] = %v, want %v", cs, par, i, j, g, e)
								}
							}
						}
						for i := 0; i < cs.m; i++ {
							copy(want[i*ldc:i*ldc+cs.n], bias)
						}
					}
				}
			})
		}
	}
}

// TestSgemmBatchedAt runs attention's products on heads read in place: Q and
// K as views of a [B, T, 3, H, D] tensor, C written into [B, T, H, T]. Each
// product must equal Sgemm on contiguous copies, bit for bit, whatever
// GOMAXPROCS is.
func TestSgemmBatchedAt(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	const B, T, H, D = 3, 13, 4, 8
	r := rand.New(rand.NewPCG(11, 12))
	qkv := randSlice(r, B*T*3*H*D)
	var offQ, offK, offC []int
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			offQ = append(offQ, b*T*3*H*D+h*D)
			offK = append(offK, b*T*3*H*D+H*D+h*D)
			offC = append(offC, b*T*H*T+h*T)
		}
	}
	ld := 3 * H * D
	for _, procs := range []int{1, 2, 4} {
		runtime.GOMAXPROCS(procs)
		c := make([]float32, B*T*H*T)
		for i := range c {
			c[i] = float32(math.NaN())
		}
		SgemmBatchedAt(B*H, false, true, T, T, D, 0.5, qkv, ld, offQ, qkv, ld, offK, 0, c, H*T, offC)
		for i := range offQ {
			q, k := make([]float32, T*D), make([]float32, T*D)
			for x := 0; x < T; x++ {
				copy(q[x*D:(x+1)*D], qkv[offQ[i]+x*ld:])
				copy(k[x*D:(x+1)*D], qkv[offK[i]+x*ld:])
			}
			want := make([]float32, T*T)
			Sgemm(false, true, T, T, D, 0.5, q, D, k, D, 0, want, T)
			for x := 0; x < T; x++ {
				for y := 0; y < T; y++ {
					if g, w := c[offC[i]+x*H*T+y], want[x*T+y]; math.Float32bits(g) != math.Float32bits(w) {
						t.Fatalf("GOMAXPROCS %d: product %d C[%d,%d] = %v, want %v", procs, i, x, y, g, w)
					}
				}
			}
		}
	}
}

// SgemmBias, the bias added in the micro-kernels' stores, has the bits of
// C filled with the bias and Sgemm with beta 1, for every variant and twin,
// with one k block and several, split for 1, 3 and 64 threads (tasks
// sharing B blocks, grids, tasks owning columns).
func TestSgemmBiasIsBetaOne(t *testing.T) {
	for _, v := range testVariants() {
		for _, threads := range []int{1, 3, 64} {
			t.Run(fmt.Sprintf("%s/%d", v.name, threads), func(t *testing.T) {
				r := rand.New(rand.NewPCG(31, 32))
				for _, cs := range gemmCases(true) {
					if cs.m == 0 || cs.n == 0 || cs.m*cs.n*cs.k > 1e6 {
						continue
					}
					lda, ldb := max(1, cs.k+cs.padA), max(1, cs.n+cs.padB)
					if cs.transA {
						lda = max(1, cs.m+cs.padA)
					}
					if cs.transB {
						ldb = max(1, cs.k+cs.padB)
					}
					a := randSlice(r, matrixLen(cs.transA, cs.m, cs.k, lda))
					b := randSlice(r, matrixLen(cs.transB, cs.k, cs.n, ldb))
					bias := randSlice(r, cs.n)
					ldc := cs.n + cs.padC
					got, want := make([]float32, cs.m*ldc), make([]float32, cs.m*ldc)
					for i := range got {
						got[i], want[i] = float32(math.NaN()), float32(math.NaN()) // C is not read; pads stay
					}
					for i := 0; i < cs.m; i++ {
						copy(want[i*ldc:], bias)
					}
					run := func(g *gemmArgs) {
						p := plans.get()
						p.gemm(v, g, threads)
						plans.put(p)
					}
					g := gemmArgs{transA: cs.transA, transB: cs.transB, m: cs.m, n: cs.n, k: cs.k, alpha: cs.alpha,
						a: a, lda: lda, b: b, ldb: ldb, ldc: ldc}
					withBias, betaOne := g, g
					withBias.c, withBias.bias = got, bias
					betaOne.c, betaOne.beta = want, 1
					run(&withBias)
					run(&betaOne)
					if x, ok := sameBits(got, want); !ok {
						t.Fatalf("%+v: C[%d] = %v with the bias, %v from C = bias and beta 1", cs, x, got[x], want[x])
					}
				}
			})
		}
	}
}

// TestSpreadsInL1 checks the rule that decides whether an A panel is read in
// place: contiguous rows (each line counted once) and rows that spread over
// the sets are; rows a power of two of lines apart, which pile up in a few
// sets, are not.
func TestSpreadsInL1(t *testing.T) {
	for _, c := range []struct {
		rows, kc, ld int
		want         bool
	}{
		{14, 128, 128, true},  // 14 contiguous rows of 128: 113 lines, at most 2 per set
		{14, 50, 50, true},    // contiguous, rows sharing lines
		{14, 32, 384, true},   // 3 lines a row, 24 lines apart: spread
		{14, 256, 512, false}, // 32 lines apart: two groups of sets, 7 lines each
		{14, 384, 384, false}, // contiguous but 337 lines: 6 per set
		{14, 64, 1024, false}, // every row in the same 5 sets
		{1, 512, 512, true},
	} {
		if got := spreadsInL1(c.rows, c.kc, c.ld); got != c.want {
			t.Errorf("spreadsInL1(%d, %d, %d) = %v, want %v", c.rows, c.kc, c.ld, got, c.want)
		}
	}
}
