package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/hyperat/hyperat/kernels/cpu"
)

// bf16TwinVariant is the bfloat16 variant made of the plain-Go twins alone
// (its 14-row kernel serves every panel), which every build has.
var bf16TwinVariant = newVariant(sgemmVariant{
	name: "bf16-go", supported: true, nr: 32, kc: bf16KC, nc: 4096,
	kernels: []tileKernel{{mr: 14, kernel: sbgemm14x32Go, twin: sbgemm14x32Go}},
	bf16:    &bf16Packers{rows: packRowsBF16Go, pairs: packPairsBF16Go, trans: packBTransBF16Go},
})

// bf16TestVariants are the bfloat16 variants to test: the assembly one
// where the CPU runs it, and the plain-Go one. (Both are compared with a
// naive loop bit for bit, so a variant mixing assembly and twins would
// check nothing more.)
func bf16TestVariants() []*sgemmVariant {
	if v := bf16Variant; v != nil && v.supported {
		return []*sgemmVariant{v, bf16TwinVariant}
	}
	return []*sgemmVariant{bf16TwinVariant}
}

func TestToBF16(t *testing.T) {
	for _, tc := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // a tie, to the even 1
		{0x3f818000, 0x3f82}, // a tie, to the even above
		{0x3f808001, 0x3f81}, // above the tie
		{0xbf80ffff, 0xbf81}, // -1.0078..., up in magnitude
		{0x7f7fffff, 0x7f80}, // the largest float32 rounds to infinity
		{0x7f800000, 0x7f80}, // +inf
		{0xff800000, 0xff80}, // -inf
		{0x7f800001, 0x7fc0}, // a signaling NaN is quieted
		{0xffc12345, 0xffc1}, // a quiet NaN is truncated
		{0x00000001, 0x0000}, // denormals become zeros of their sign
		{0x807fffff, 0x8000},
		{0x00800000, 0x0080}, // the smallest normal
		{0x80000000, 0x8000},
	} {
		if got := toBF16(math.Float32frombits(tc.in)); got != tc.want {
			t.Errorf("toBF16(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func TestFMABF16(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	bf := func(x float32) uint16 { return uint16(math.Float32bits(x) >> 16) }
	for _, tc := range []struct {
		acc, x, y float32
		want      uint32
	}{
		{1, 2, 3, math.Float32bits(7)},
		{0x1p24, 1, 1, math.Float32bits(0x1p24)},                     // the tie 2^24+1 rounds to even
		{0x1p24, 3, 1, math.Float32bits(0x1p24 + 4)},                 // 2^24+3 rounds up
		{0, 0x1p-70, 0x1p-70, 0},                                     // 2^-140 is flushed
		{0, -0x1p-70, 0x1p-70, 0x80000000},                           // to the zero of its sign
		{0x1p-126, 0x1p-63, -0x1p-64, 0},                             // 2^-127 is flushed
		{0x1p-126, 0x1p-75, -0x1p-75, 0},                             // 2^-126 - 2^-150 is below the smallest normal
		{0x1p-126, 0x1p-76, -0x1p-76, 0x00800000},                    // 2^-126 - 2^-152 rounds up to it
		{float32(math.Inf(1)), 0, 1, 0x7f800000},                     // inf + 0
		{float32(math.Inf(1)), -0x1p100, 0x1p100, 0x7f800000},        // inf - 2^200 (exact, finite)
		{float32(math.Inf(1)), float32(math.Inf(-1)), 1, 0xffc00000}, // inf - inf: the default NaN
		{0x1p127, 0x1p100, 0x1p100, 0x7f800000},                      // overflow
		{negZero, negZero, 1, 0x80000000},                            // -0 + -0
		{negZero, 0, 1, 0},                                           // -0 + +0
	} {
		if got := math.Float32bits(fmaBF16(tc.acc, bf(tc.x), bf(tc.y))); got != tc.want {
			t.Errorf("fmaBF16(%g, %g, %g) = %#08x, want %#08x", tc.acc, tc.x, tc.y, got, tc.want)
		}
	}
	// The denormal accumulator is read as zero; NaNs: the first of x, y, acc.
	if got := fmaBF16(math.Float32frombits(1), 0, 0); math.Float32bits(got) != 0 {
		t.Errorf("a denormal accumulator: %#08x, want +0", math.Float32bits(got))
	}
	if got := math.Float32bits(fmaBF16(float32(math.NaN()), 0x7f81, 0xffc2)); got != 0x7fc10000 {
		t.Errorf("NaN order: %#08x, want 0x7fc10000 (x quieted)", got)
	}
}

// specialBF16 draws float32 values for the kernels' inputs: ordinary ones,
// zeros, denormals, infinities, NaNs, and values whose products come near
// the smallest normal or past the largest.
func specialBF16(r *rand.Rand) float32 {
	sign := uint32(r.IntN(2)) << 31
	mant := r.Uint32() & 0x7fffff
	var exp uint32
	switch r.IntN(12) {
	case 0:
		exp, mant = 0, 0
	case 1:
		exp = 0
	case 2:
		exp = 0xff
		if r.IntN(2) == 0 {
			mant = 0
		}
	case 3, 4, 5:
		exp = uint32(60 + r.IntN(8)) // products near 2^-126
	case 6:
		exp = uint32(188 + r.IntN(8)) // products past the largest float32
	default:
		exp = uint32(120 + r.IntN(14))
	}
	return math.Float32frombits(sign | exp<<23 | mant)
}

// sameBits fails unless got and want hold the same bits, guards included.
func sameBits(got, want []float32) (int, bool) {
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			return i, false
		}
	}
	return 0, true
}

// TestSbgemmMicroKernels compares each bfloat16 kernel with its twin, bit
// for bit (NaN payloads too), on every tile shape, on pairs with special
// values and with C surrounded by guard values.
func TestSbgemmMicroKernels(t *testing.T) {
	v := bf16Variant
	if v == nil || !v.supported {
		t.Skip("no AVX512_BF16 kernels here")
	}
	r := rand.New(rand.NewPCG(21, 22))
	for _, tk := range v.kernels {
		mr := tk.mr
		for _, k := range []int{1, 2, 3, 4, 5, 7, 8, 9, 33} {
			for _, st := range stores {
				for _, layout := range [][2]int{{k + 3, 1}, {1, 16}} {
					rs, ks := layout[0], layout[1]
					a := make([]float32, (mr-1)*rs+(k-1)*ks+1)
					b := make([]float32, k*32)
					pa, pb := pairsOf(a), pairsOf(b)
					for i := range pa {
						pa[i] = pairBF16(specialBF16(r), specialBF16(r))
					}
					for i := range pb {
						pb[i] = pairBF16(specialBF16(r), specialBF16(r))
					}
					for rows := 1; rows <= mr; rows++ {
						for cols := 1; cols <= 32; cols++ {
							ldc := cols + 3
							bias, fill := st.biasFor(r, cols)
							want := newTestMatrix(r, rows, cols, ldc, fill)
							got := testMatrix{buf: append([]float32(nil), want.buf...), rows: rows, cols: cols, ld: ldc}
							tk.twin(k, a, rs, ks, b, want.data(), ldc, 1.5, st.beta, bias, rows, cols)
							tk.kernel(k, a, rs, ks, b, got.data(), ldc, 1.5, st.beta, bias, rows, cols)
							name := fmt.Sprintf("%dx32 k%d %+v rs%d ks%d %dx%d", mr, k, st, rs, ks, rows, cols)
							if x, ok := sameBits(got.buf, want.buf); !ok {
								t.Fatalf("%s: offset %d: %#08x, twin %#08x", name, x-guardLen,
									math.Float32bits(got.buf[x]), math.Float32bits(want.buf[x]))
							}
							if bias != nil {
								checkBiasIsBetaOne(t, name, tk.kernel, k, a, rs, ks, b, bias, got)
								checkBiasIsBetaOne(t, name+" (twin)", tk.twin, k, a, rs, ks, b, bias, want)
							}
						}
					}
				}
			}
		}
	}
}

// TestPackBF16 compares the bfloat16 packers with their twins, bit for
// bit, with guard values after what they write.
func TestPackBF16(t *testing.T) {
	v := bf16Variant
	if v == nil || !v.supported {
		t.Skip("no AVX512_BF16 kernels here")
	}
	r := rand.New(rand.NewPCG(23, 24))
	guarded := func(n int) (got, want []float32) {
		got, want = make([]float32, n+guardLen), make([]float32, n+guardLen)
		for i := range got {
			got[i], want[i] = guard, guard
		}
		return got, want
	}
	check := func(name string, got, want []float32) {
		t.Helper()
		if x, ok := sameBits(got, want); !ok {
			t.Fatalf("%s: [%d] = %#08x, twin %#08x", name, x, math.Float32bits(got[x]), math.Float32bits(want[x]))
		}
	}
	special := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = specialBF16(r)
		}
		return s
	}
	for n := 1; n <= 100; n++ {
		for _, rows := range []int{1, 3} {
			ld, pitch := n+r.IntN(3), (n+1)/2+r.IntN(3)
			src := special((rows-1)*ld + n)
			got, want := guarded((rows-1)*pitch + (n+1)/2)
			packRowsBF16Go(want, src, ld, rows, n, pitch)
			v.bf16.rows(got, src, ld, rows, n, pitch)
			check(fmt.Sprintf("rows n %d rows %d", n, rows), got, want)
		}
	}
	for _, rows := range []int{1, 2, 3, 8, 9, 31} {
		for _, cols := range []int{1, 5, 14, 16, 17, 32, 33, 40, 64, 95} {
			ld := cols + r.IntN(3)
			src := special((rows-1)*ld + cols)
			steps := (rows + 1) / 2
			// k-major A panels: one chunk, 16 pairs per step.
			if cols <= 16 {
				got, want := guarded(16 * steps)
				packPairsBF16Go(want, src, ld, rows, cols, 1, 0, 16)
				v.bf16.pairs(got, src, ld, rows, cols, 1, 0, 16)
				check(fmt.Sprintf("pairs A rows %d cols %d", rows, cols), got, want)
			}
			// B panels of 32 columns, pstride apart.
			panels := ceilDiv(cols, 32)
			pstride := 32*steps + r.IntN(2)*7
			got, want := guarded((panels-1)*pstride + 32*steps)
			packPairsBF16Go(want, src, ld, rows, cols, 2*panels, pstride, 32)
			v.bf16.pairs(got, src, ld, rows, cols, 2*panels, pstride, 32)
			check(fmt.Sprintf("pairs B rows %d cols %d", rows, cols), got, want)
		}
	}
	for _, k32 := range []int{32, 64, 416} {
		for _, extra := range []int{0, 1, 17} {
			ldb := k32 + extra
			src := special(31*ldb + k32)
			for _, cols := range []int{32, 31, 17, 16, 15, 1, 0} {
				got, want := guarded(k32 * 16)
				packBTransBF16Go(want, src, ldb, k32, cols)
				v.bf16.trans(got, src, ldb, k32, cols)
				check(fmt.Sprintf("trans k32 %d ldb %d cols %d", k32, ldb, cols), got, want)
			}
		}
	}
}

// TestConvertBF16Exhaustive rounds every float32 with the assembly packer
// and compares with toBF16. It takes half a minute on 2 cores: set
// HYPERAT_BF16_EXHAUSTIVE=1 to run it.
func TestConvertBF16Exhaustive(t *testing.T) {
	if os.Getenv("HYPERAT_BF16_EXHAUSTIVE") != "1" {
		t.Skip("set HYPERAT_BF16_EXHAUSTIVE=1 to run")
	}
	v := bf16Variant
	if v == nil || !v.supported {
		t.Skip("no AVX512_BF16 kernels here")
	}
	const chunk = 1 << 16
	var wg sync.WaitGroup
	var once sync.Once
	work := make(chan uint64, 8)
	for g := 0; g < runtime.GOMAXPROCS(0); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := make([]float32, chunk)
			out := make([]float32, chunk/2)
			for start := range work {
				for i := range x {
					x[i] = math.Float32frombits(uint32(start) + uint32(i))
				}
				v.bf16.rows(out, x, chunk, 1, chunk, chunk/2)
				for i, p := range pairsOf(out) {
					for h, want := range [2]uint16{toBF16(x[2*i]), toBF16(x[2*i+1])} {
						if got := uint16(p >> (16 * h)); got != want {
							once.Do(func() {
								t.Errorf("%#08x: VCVTNE2PS2BF16 gives %#04x, toBF16 %#04x", math.Float32bits(x[2*i+h]), got, want)
							})
						}
					}
				}
			}
		}()
	}
	for start := uint64(0); start < 1<<32; start += chunk {
		work <- start
	}
	close(work)
	wg.Wait()
}

// refBF16 computes the product of cs on the stored matrices a, b as the
// bfloat16 variants define it, in the simplest order: each element sums
// the pairs of each block of kc along k with dotBF16, scales the block's
// sum by alpha and adds beta*C (1*C after the first block; C starts as the
// bias when there is one).
func refBF16(cs gemmCase, kc int, a, b testMatrix, bias, c []float32, ldc int) {
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
	for i := 0; i < cs.m; i++ {
		for j := 0; j < cs.n; j++ {
			out := &c[i*ldc+j]
			beta := cs.beta
			if bias != nil {
				*out, beta = bias[j], 1
			}
			if cs.k == 0 || cs.alpha == 0 {
				switch {
				case bias != nil:
				case beta == 0:
					*out = 0
				case beta != 1:
					*out *= beta
				}
				continue
			}
			for pc := 0; pc < cs.k; pc += kc {
				end := min(pc+kc, cs.k)
				var s float32
				for p := pc; p < end; p += 2 {
					var a1, b1 float32
					if p+1 < end {
						a1, b1 = opA(i, p+1), opB(p+1, j)
					}
					s = dotBF16(s, pairBF16(opB(p, j), b1), pairBF16(opA(i, p), a1))
				}
				if beta == 0 {
					*out = cs.alpha * s
				} else {
					*out = float32(cs.alpha*s) + float32(beta**out)
				}
				beta = 1
			}
		}
	}
}

// checkBF16Case runs one product with run and compares it, bit for bit,
// with refBF16 for a variant whose blocks along k are v.kBlock(k) long;
// with bias, the product is SgemmBias's.
func checkBF16Case(t *testing.T, r *rand.Rand, v *sgemmVariant, cs gemmCase, withBias bool, run func(g *gemmArgs)) {
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
	var bias []float32
	if withBias {
		cs.beta = 0
		bias = make([]float32, cs.n)
		for i := range bias {
			bias[i] = uniform()
		}
	}
	if cs.beta == 0 {
		fillC = func() float32 { return float32(math.NaN()) }
	}
	c := newTestMatrix(r, cs.m, cs.n, max(1, cs.n+cs.padC), fillC)
	want := testMatrix{buf: append([]float32(nil), c.buf...), rows: c.rows, cols: c.cols, ld: c.ld}
	refBF16(cs, v.kBlock(max(cs.k, 1)), a, b, bias, want.buf[guardLen:], c.ld)
	run(&gemmArgs{
		transA: cs.transA, transB: cs.transB, m: cs.m, n: cs.n, k: cs.k,
		alpha: cs.alpha, beta: cs.beta, bias: bias,
		a: a.data(), lda: a.ld, b: b.data(), ldb: b.ld, c: c.data(), ldc: c.ld,
	})
	if x, ok := sameBits(c.buf, want.buf); !ok {
		x -= guardLen
		t.Fatalf("%v bias %v: C offset %d (row %d) = %v, want %v", cs, withBias, x, x/c.ld, c.buf[x+guardLen], want.buf[x+guardLen])
	}
}

// TestSgemmBF16Variants checks every bfloat16 variant against refBF16 bit
// for bit over the sweep of the float32 tests, on one goroutine and split
// for 3, 16 and 64 (every way of splitting), with the blocks of the variant and with tiny blocks (many
// blocks along k and n), and with a bias.
func TestSgemmBF16Variants(t *testing.T) {
	for _, v := range bf16TestVariants() {
		small := *v
		small.kc, small.nc = 6, 2*v.nr
		for _, w := range []*sgemmVariant{v, &small} {
			name := v.name
			if w == &small {
				name += "/small"
			}
			t.Run(name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(25, 26))
				for x, cs := range gemmCases(true) {
					if w == &small && (cs.m*cs.n*cs.k > 1e6 || x%2 != 0) {
						continue
					}
					threads := []int{1, 3, 16, 64}[x%4]
					checkBF16Case(t, r, w, cs, x%5 == 0, func(g *gemmArgs) {
						p := plans.get()
						p.gemm(w, g, threads)
						plans.put(p)
					})
				}
			})
		}
	}
}

// TestSgemmBF16Accuracy checks that refBF16 itself is the product of the
// rounded operands: within float32 rounding of the float64 sum of their
// products, and within bfloat16 rounding of the exact product.
func TestSgemmBF16Accuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	const m, n, k = 7, 9, 1000
	uniform := func() float32 { return float32(r.Float64()*2 - 1) }
	a := newTestMatrix(r, m, k, k, uniform)
	b := newTestMatrix(r, k, n, n, uniform)
	c := make([]float32, m*n)
	refBF16(gemmCase{m: m, n: n, k: k, alpha: 1}, bf16KC, a, b, nil, c, n)
	round := func(x float32) float64 { return float64(math.Float32frombits(uint32(toBF16(x)) << 16)) }
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var rounded, exact, abs float64
			for p := 0; p < k; p++ {
				rounded += round(a.at(i, p)) * round(b.at(p, j))
				exact += float64(a.at(i, p)) * float64(b.at(p, j))
				abs += math.Abs(float64(a.at(i, p)) * float64(b.at(p, j)))
			}
			got := float64(c[i*n+j])
			if d := math.Abs(got - rounded); d > 2*(k+2)*0x1p-24*abs {
				t.Fatalf("C[%d,%d] = %v, the rounded operands' product is %v", i, j, got, rounded)
			}
			if d := math.Abs(got - exact); d > 3*0x1p-9*abs {
				t.Fatalf("C[%d,%d] = %v, the exact product is %v (bound %.3g)", i, j, got, exact, 3*0x1p-9*abs)
			}
		}
	}
}

// TestPrecisionBF16 checks the public entry points of BF16: the products
// of the bfloat16 variant where it runs, else FP32's bits; batched products
// equal one product per matrix; results do not depend on GOMAXPROCS.
func TestPrecisionBF16(t *testing.T) {
	t.Logf("BF16 runs %s (native %v)", BF16.variant().name, BF16.Native())
	if bf16Variant != nil && bf16Variant.supported && os.Getenv(cpu.NoAVX512BF16) != "1" && os.Getenv(cpu.NoAVX512) != "1" {
		if BF16.variant() != bf16Variant || !BF16.Native() {
			t.Fatal("BF16 does not use the AVX512_BF16 kernels on a CPU that has them")
		}
	} else if BF16.variant() != FP32.variant() {
		t.Fatal("BF16 falls back to something else than FP32")
	}
	r := rand.New(rand.NewPCG(29, 30))
	for x, cs := range gemmCases(true) {
		if x%4 != 0 {
			continue // the sweep is TestSgemmBF16Variants'; this checks the entry points
		}
		v := BF16.variant()
		if v.bf16 != nil {
			checkBF16Case(t, r, v, cs, false, func(g *gemmArgs) {
				BF16.Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
			})
			if x%8 == 0 {
				checkBF16Case(t, r, v, cs, true, func(g *gemmArgs) {
					BF16.SgemmBias(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.bias, g.c, g.ldc)
				})
			}
			continue
		}
		checkGemmCase(t, r, cs, func(g *gemmArgs) {
			want := append([]float32(nil), g.c...)
			FP32.Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, want, g.ldc)
			BF16.Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
			if x, ok := sameBits(g.c, want); !ok {
				t.Fatalf("%v: the FP32 fallback differs at %d", cs, x)
			}
		})
	}
}

// TestChooseBF16 checks the environment switches: each turns the bfloat16
// kernels off, leaving FP32's.
func TestChooseBF16(t *testing.T) {
	for _, env := range []string{cpu.NoAVX512BF16, cpu.NoAVX512} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "1")
			if v := chooseBF16(); v != activeSgemm {
				t.Errorf("%s=1: BF16 chooses %s, want %s", env, v.name, activeSgemm.name)
			}
		})
	}
	for _, s := range []string{"fp32", "bf16"} {
		if p, err := ParsePrecision(s); err != nil || p.String() != s {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePrecision("fp16"); err == nil {
		t.Error("ParsePrecision(fp16): no error")
	}
}

func TestSgemmBF16Batched(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(31, 32))
	for _, bc := range []struct {
		batch          int
		transA, transB bool
		m, n, k        int
	}{
		{12, false, false, 50, 50, 32},
		{12, false, true, 50, 50, 32},
		{7, true, false, 33, 20, 50},
		{3, true, true, 197, 64, 197},
		{1, false, false, 300, 64, 197},
	} {
		ra, ca := bc.m, bc.k
		if bc.transA {
			ra, ca = ca, ra
		}
		rb, cb := bc.k, bc.n
		if bc.transB {
			rb, cb = cb, rb
		}
		a, b := randSlice(r, ra*ca*bc.batch), randSlice(r, rb*cb*bc.batch)
		ldc := bc.n * bc.batch
		want := make([]float32, bc.m*ldc)
		for i := 0; i < bc.batch; i++ {
			BF16.Sgemm(bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a[i*ra*ca:], ca, b[i*rb*cb:], cb, 0, want[i*bc.n:], ldc)
		}
		offA, offB, offC := make([]int, bc.batch), make([]int, bc.batch), make([]int, bc.batch)
		for i := range offA {
			offA[i], offB[i], offC[i] = i*ra*ca, i*rb*cb, i*bc.n
		}
		for _, procs := range []int{1, 2, 3} {
			runtime.GOMAXPROCS(procs)
			for at := 0; at < 2; at++ {
				c := make([]float32, bc.m*ldc)
				for i := range c {
					c[i] = float32(math.NaN())
				}
				if at == 0 {
					BF16.SgemmBatched(bc.batch, bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a, ca, ra*ca, b, cb, rb*cb, 0, c, ldc, bc.n)
				} else {
					BF16.SgemmBatchedAt(bc.batch, bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a, ca, offA, b, cb, offB, 0, c, ldc, offC)
				}
				if x, ok := sameBits(c, want); !ok {
					t.Fatalf("%+v GOMAXPROCS %d at %v: C[%d] = %v, one product per matrix gives %v", bc, procs, at == 1, x, c[x], want[x])
				}
			}
		}
	}
}

// TestSgemmBF16Deterministic checks that bfloat16 results do not depend on
// GOMAXPROCS.
func TestSgemmBF16Deterministic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(33, 34))
	for _, cs := range []gemmCase{
		{m: 397, n: 211, k: 1700, alpha: 1},
		{transA: true, m: 130, n: 900, k: 301, alpha: 0.5, beta: 1},
		{transB: true, m: 1000, n: 60, k: 130, alpha: 1},
		{transB: true, m: 230, n: 96, k: 300, alpha: 1, beta: 1}, // a grid of rows and columns on 8
	} {
		ra, ca := cs.m, cs.k
		if cs.transA {
			ra, ca = ca, ra
		}
		rb, cb := cs.k, cs.n
		if cs.transB {
			rb, cb = cb, rb
		}
		a, b, c0 := randSlice(r, ra*ca), randSlice(r, rb*cb), randSlice(r, cs.m*cs.n)
		var ref []float32
		for _, procs := range []int{1, 2, 4, 3, 8} {
			runtime.GOMAXPROCS(procs)
			c := append([]float32(nil), c0...)
			BF16.Sgemm(cs.transA, cs.transB, cs.m, cs.n, cs.k, cs.alpha, a, ca, b, cb, cs.beta, c, cs.n)
			if ref == nil {
				ref = c
				continue
			}
			if x, ok := sameBits(c, ref); !ok {
				t.Fatalf("%v: GOMAXPROCS %d gives C[%d] = %v, GOMAXPROCS 1 gave %v", cs, procs, x, c[x], ref[x])
			}
		}
	}
}

func TestSgemmBF16NoAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	const m, n, k = 300, 400, 200
	a, b, c := randSlice(r, m*k), randSlice(r, k*n), randSlice(r, m*n)
	for _, tr := range []bool{false, true} {
		lda, ldb := k, n
		if tr {
			lda, ldb = m, k
		}
		run := func() { BF16.Sgemm(tr, tr, m, n, k, 1, a, lda, b, ldb, 0, c, n) }
		run()
		if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
			t.Errorf("BF16.Sgemm trans %v: %v allocations per call", tr, allocs)
		}
	}
}
