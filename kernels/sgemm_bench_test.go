package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// benchShape is one product as MxKxN: op(A) is M×K, op(B) is K×N.
type benchShape struct {
	name           string
	transA, transB bool
	m, k, n        int
	batch          int // 0: one Sgemm call; else SgemmBatched
}

func (s benchShape) String() string {
	t := "NN"
	switch {
	case s.transA && s.transB:
		t = "TT"
	case s.transA:
		t = "TN"
	case s.transB:
		t = "NT"
	}
	if s.batch > 0 {
		return fmt.Sprintf("%s_%dx%dx%dx%d", t, s.batch, s.m, s.k, s.n)
	}
	return fmt.Sprintf("%s_%dx%dx%d", t, s.m, s.k, s.n)
}

func (s benchShape) flops() float64 {
	return 2 * float64(max(s.batch, 1)) * float64(s.m) * float64(s.n) * float64(s.k)
}

// vitShapes are the products of ViT training steps: the forward Linear
// layers (MxKxN: tokens × in × out), the input gradient dX = dY·Wᵀ (NT,
// tokens × out × in) and the weight gradient dW = Xᵀ·dY (TN, in × tokens ×
// out), and the batched attention products.
func vitShapes() []benchShape {
	var s []benchShape
	linear := [][3]int{
		{3200, 128, 384}, {3200, 384, 128}, {3200, 128, 512}, {3200, 512, 128},
		{12800, 128, 384}, {12800, 384, 128}, {12800, 128, 512}, {12800, 512, 128},
		{1576, 768, 2304}, {1576, 768, 3072}, {1576, 3072, 768}, {1576, 768, 768},
		{1024, 1024, 1024},
	}
	for _, l := range linear {
		m, k, n := l[0], l[1], l[2]
		s = append(s,
			benchShape{m: m, k: k, n: n},
			benchShape{transB: true, m: m, k: n, n: k}, // dX = dY·Wᵀ
			benchShape{transA: true, m: k, k: m, n: n}, // dW = Xᵀ·dY
		)
	}
	// Attention per head (batch × heads matrices of tokens × head size):
	// S = Q·Kᵀ and O = P·V, and their gradients.
	for _, a := range []struct{ batch, t, d int }{{256, 50, 32}, {96, 197, 64}} {
		s = append(s,
			benchShape{batch: a.batch, transB: true, m: a.t, k: a.d, n: a.t}, // Q·Kᵀ, dP = dO·Vᵀ
			benchShape{batch: a.batch, m: a.t, k: a.t, n: a.d},               // P·V, dQ = dS·K
			benchShape{batch: a.batch, transA: true, m: a.t, k: a.t, n: a.d}, // dV = Pᵀ·dO, dK = dSᵀ·Q
		)
	}
	return s
}

func benchGemm(b *testing.B, s benchShape, run func(s benchShape, a, bm, c []float32)) {
	r := rand.New(rand.NewPCG(1, 1))
	batch := max(s.batch, 1)
	a := randSlice(r, batch*s.m*s.k)
	bm := randSlice(r, batch*s.k*s.n)
	c := randSlice(r, batch*s.m*s.n)
	run(s, a, bm, c)
	times := make([]time.Duration, 0, 64)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		run(s, a, bm, c)
		times = append(times, time.Since(t0))
	}
	b.ReportMetric(s.flops()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(s.flops()/quartile(times).Seconds()/1e9, "q1-GFLOP/s")
}

// quartile returns the first quartile of the call times. The machine's cores
// may be shared with other work, which only ever slows a call down, so the
// fast quarter of the calls shows the code's own speed better than the mean;
// the quartile rather than the minimum keeps clock glitches out.
func quartile(times []time.Duration) time.Duration {
	slices.Sort(times)
	return times[len(times)/4]
}

// lds returns the packed leading dimensions of the stored A and B.
func (s benchShape) lds() (lda, ldb int) {
	lda, ldb = s.k, s.n
	if s.transA {
		lda = s.m
	}
	if s.transB {
		ldb = s.k
	}
	return lda, ldb
}

func runSgemm(s benchShape, a, bm, c []float32) {
	lda, ldb := s.lds()
	if s.batch > 0 {
		SgemmBatched(s.batch, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, s.m*s.k, bm, ldb, s.k*s.n, 0, c, s.n, s.m*s.n)
		return
	}
	Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
}

// BenchmarkSgemm measures the dispatched Sgemm on the ViT shapes, on all
// GOMAXPROCS threads.
func BenchmarkSgemm(b *testing.B) {
	for _, s := range vitShapes() {
		b.Run(s.String(), func(b *testing.B) { benchGemm(b, s, runSgemm) })
	}
}

// BenchmarkSgemmVariants measures every variant the CPU supports on a few
// shapes.
func BenchmarkSgemmVariants(b *testing.B) {
	shapes := []benchShape{
		{m: 3200, k: 128, n: 384},
		{m: 1576, k: 768, n: 2304},
		{transB: true, m: 1576, k: 768, n: 2304},
		{transA: true, m: 768, k: 1576, n: 2304},
		{m: 1024, k: 1024, n: 1024},
	}
	for _, v := range sgemmVariants {
		if !v.supported {
			continue
		}
		for _, s := range shapes {
			b.Run(v.name+"/"+s.String(), func(b *testing.B) {
				benchGemm(b, s, func(s benchShape, a, bm, c []float32) {
					lda, ldb := s.lds()
					v.gemm(&gemmArgs{transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: 1,
						a: a, lda: lda, b: bm, ldb: ldb, c: c, ldc: s.n}, true)
				})
			})
		}
	}
}

// naiveSgemm is the baseline: the textbook triple loop, i-p-j order so that
// the inner loop runs along rows of B and C.
func naiveSgemm(m, n, k int, a, b, c []float32) {
	for i := 0; i < m; i++ {
		ci := c[i*n : i*n+n]
		clear(ci)
		for p := 0; p < k; p++ {
			aip := a[i*k+p]
			bp := b[p*n : p*n+n]
			for j, x := range bp {
				ci[j] += aip * x
			}
		}
	}
}

func BenchmarkSgemmNaive(b *testing.B) {
	for _, s := range []benchShape{{m: 3200, k: 128, n: 384}, {m: 1024, k: 1024, n: 1024}} {
		b.Run(s.String(), func(b *testing.B) {
			benchGemm(b, s, func(s benchShape, a, bm, c []float32) { naiveSgemm(s.m, s.n, s.k, a, bm, c) })
		})
	}
}

// BenchmarkMicroKernel measures each kernel alone on L1-resident panels: the
// ceiling of the blocked product, timed in windows of 64 calls. k counts
// elements along k (pairs of them for the bfloat16 kernel).
func BenchmarkMicroKernel(b *testing.B) {
	vs := sgemmVariants
	if bf16Variant != nil && bf16Variant.supported {
		vs = append(vs[:len(vs):len(vs)], bf16Variant)
	}
	for _, v := range vs {
		if !v.supported {
			continue
		}
		for _, k := range []int{64, 256} {
			b.Run(fmt.Sprintf("%s/k%d", v.name, k), func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 1))
				a := randSlice(r, v.mr*k)
				bp := randSlice(r, v.nr*k)
				c := randSlice(r, v.mr*v.nr)
				if v.bf16 != nil {
					// Packed pairs of ordinary values.
					for _, s := range [][]float32{a, bp} {
						for i, p := range pairsOf(s) {
							p = pairBF16(float32(r.NormFloat64()), float32(r.NormFloat64()))
							pairsOf(s)[i] = p
						}
					}
				}
				steps := v.kSteps(k)
				const window = 64
				var times []time.Duration
				for b.Loop() {
					t0 := time.Now()
					for range window {
						v.kernels[0].kernel(steps, a, 1, v.mr, bp, c, v.nr, 1, 0, nil, v.mr, v.nr)
					}
					times = append(times, time.Since(t0))
				}
				flops := 2 * float64(v.mr*v.nr*k) * window
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops/quartile(times).Seconds()/1e9, "q1-GFLOP/s")
			})
		}
	}
}

// precisionShapes are the products BenchmarkPrecision compares: those of
// the fixture MNIST ViT at batch 64 (3200 tokens, width 128, MLP 384;
// attention 50×50 per head of 32) and of ViT-B/16 at batch 8.
func precisionShapes() []benchShape {
	return []benchShape{
		{m: 3200, k: 128, n: 384},                        // qkv, fc1
		{transB: true, m: 3200, k: 384, n: 128},          // their input gradients
		{m: 3200, k: 384, n: 128},                        // fc2
		{transB: true, m: 3200, k: 128, n: 384},          // its input gradient
		{m: 3200, k: 128, n: 128},                        // proj
		{batch: 256, transB: true, m: 50, k: 32, n: 50},  // Q·Kᵀ, dP = dO·Vᵀ
		{batch: 256, m: 50, k: 50, n: 32},                // P·V, dQ = dS·K
		{batch: 256, transA: true, m: 50, k: 50, n: 32},  // dK = dSᵀ·Q, dV = Pᵀ·dO
		{m: 1576, k: 768, n: 2304},                       // ViT-B qkv
		{transB: true, m: 1576, k: 2304, n: 768},         // its input gradient
		{m: 1576, k: 768, n: 3072},                       // fc1
		{m: 1576, k: 3072, n: 768},                       // fc2
		{transB: true, m: 1576, k: 768, n: 3072},         // its input gradient
		{batch: 96, transB: true, m: 197, k: 64, n: 197}, // ViT-B Q·Kᵀ
		{batch: 96, m: 197, k: 197, n: 64},               // P·V
	}
}

// BenchmarkPrecision runs each shape with FP32 and BF16 products in turn,
// call after call in one loop, so that both meet the same load on a shared
// machine: it reports the first-quartile GFLOP/s of each and their ratio.
func BenchmarkPrecision(b *testing.B) {
	if !BF16.Native() {
		b.Skip("BF16 falls back to FP32 here")
	}
	for _, s := range precisionShapes() {
		b.Run(s.String(), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 1))
			batch := max(s.batch, 1)
			a := randSlice(r, batch*s.m*s.k)
			bm := randSlice(r, batch*s.k*s.n)
			c := randSlice(r, batch*s.m*s.n)
			lda, ldb := s.lds()
			run := func(p Precision) time.Duration {
				t0 := time.Now()
				if s.batch > 0 {
					p.SgemmBatched(s.batch, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, s.m*s.k, bm, ldb, s.k*s.n, 0, c, s.n, s.m*s.n)
				} else {
					p.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
				}
				return time.Since(t0)
			}
			run(FP32)
			run(BF16)
			var t32, t16 []time.Duration
			for b.Loop() {
				t32 = append(t32, run(FP32))
				t16 = append(t16, run(BF16))
			}
			q32, q16 := quartile(t32), quartile(t16)
			b.ReportMetric(s.flops()/q32.Seconds()/1e9, "fp32-GFLOP/s")
			b.ReportMetric(s.flops()/q16.Seconds()/1e9, "bf16-GFLOP/s")
			b.ReportMetric(q32.Seconds()/q16.Seconds(), "speedup")
		})
	}
}

// BenchmarkParallelFor measures the cost of one fork-join of the pool with
// trivial work.
func BenchmarkParallelFor(b *testing.B) {
	var sink [64]int64
	for b.Loop() {
		ParallelFor(64, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				sink[i]++
			}
		})
	}
}
