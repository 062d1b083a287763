package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hyperat/hyperat/kernels/vmath"
)

// BenchmarkAttention times one attention forward and backward on heads read
// in place (the layout of newAttnLayout), fused (Attention, AttentionGrad)
// and as the steps apart (the products through SgemmBatchedAt, the softmax
// and its gradient over all heads at once, as the engine runs them without
// the fuse-attention pass): the MNIST fixture's shape (batch 64, 4 heads,
// 50 tokens of 32) and ViT-B/16's (batch 8, 12 heads, 197 tokens of 64).
// Each iteration runs both, in alternating order, so that on a shared
// machine both meet the same load; it reports the medians and the median
// ratio (speedup: steps / fused).
func BenchmarkAttention(b *testing.B) {
	for _, sh := range [][4]int{{64, 50, 4, 32}, {8, 197, 12, 64}} {
		l := newAttnLayout(sh[0], sh[1], sh[2], sh[3])
		T, D, heads := l.T, l.D, l.B*l.H
		r := rand.New(rand.NewPCG(1, 2))
		qkv := randSlice(r, l.B*T*3*l.H*D)
		do := randSlice(r, l.B*T*l.H*D)
		o, g := make([]float32, len(do)), make([]float32, len(qkv))
		p, dS := make([]float32, heads*T*T), make([]float32, heads*T*T)
		plain := make([]int, heads)
		for i := range plain {
			plain[i] = i * T * T
		}
		const alpha = 0.125
		name := fmt.Sprintf("%dx%dx%dx%d", l.B, l.H, T, D)
		flops := 4 * 2 * float64(heads) * float64(T*T*D) // forward 2 products, backward 4: 6, at 2mnk each
		flops *= 6.0 / 4
		fused := func() {
			Attention(heads, T, T, D, D, alpha, qkv, l.q, qkv, l.k, qkv, l.v, nil, nil, o, l.o, p)
			AttentionGrad(heads, T, T, D, D, alpha, qkv, l.q, qkv, l.k, qkv, l.v, p, do, l.o, g, l.q, g, l.k, g, l.v)
		}
		steps := func() {
			SgemmBatchedAt(heads, false, true, T, T, D, alpha, qkv, l.q.LD, l.q.Off, qkv, l.k.LD, l.k.Off, 0, p, T, plain)
			softmaxAll(p, heads*T, T)
			SgemmBatchedAt(heads, false, false, T, D, T, 1, p, T, plain, qkv, l.v.LD, l.v.Off, 0, o, l.o.LD, l.o.Off)
			SgemmBatchedAt(heads, false, true, T, T, D, 1, do, l.o.LD, l.o.Off, qkv, l.v.LD, l.v.Off, 0, dS, T, plain)
			softmaxGradAll(dS, p, heads*T, T)
			SgemmBatchedAt(heads, false, false, T, D, T, alpha, dS, T, plain, qkv, l.k.LD, l.k.Off, 0, g, l.q.LD, l.q.Off)
			SgemmBatchedAt(heads, true, false, T, D, T, alpha, dS, T, plain, qkv, l.q.LD, l.q.Off, 0, g, l.q.LD, l.k.Off)
			SgemmBatchedAt(heads, true, false, T, D, T, 1, p, T, plain, do, l.o.LD, l.o.Off, 0, g, l.v.LD, l.v.Off)
		}
		b.Run(name, func(b *testing.B) {
			fused()
			steps()
			var tf, ts, ratio []time.Duration
			for i := 0; b.Loop(); i++ {
				// alternate which goes first, so that both meet the same load
				a, c := fused, steps
				if i%2 == 1 {
					a, c = steps, fused
				}
				t0 := time.Now()
				a()
				t1 := time.Now()
				c()
				d1, d2 := t1.Sub(t0), time.Since(t1)
				if i%2 == 1 {
					d1, d2 = d2, d1
				}
				tf, ts = append(tf, d1), append(ts, d2)
				ratio = append(ratio, time.Duration(float64(time.Millisecond)*d2.Seconds()/d1.Seconds()))
			}
			b.ReportMetric(median(tf).Seconds()*1e3, "fused-ms")
			b.ReportMetric(median(ts).Seconds()*1e3, "steps-ms")
			b.ReportMetric(median(ratio).Seconds()*1e3, "speedup")
			b.ReportMetric(flops/median(tf).Seconds()/1e9, "fused-GFLOP/s")
		})
	}
}

// softmaxAll and softmaxGradAll split the rows over the cores as the
// engine's Softmax and SoftmaxGrad kernels do.
func softmaxAll(x []float32, rows, n int) {
	ParallelFor(rows, func(lo, hi int) { vmath.SoftmaxRows(x[lo*n:hi*n], x[lo*n:hi*n], hi-lo, n) })
}

func softmaxGradAll(dx, y []float32, rows, n int) {
	ParallelFor(rows, func(lo, hi int) {
		vmath.SoftmaxGradRows(dx[lo*n:hi*n], y[lo*n:hi*n], dx[lo*n:hi*n], hi-lo, n)
	})
}

func median(ts []time.Duration) time.Duration {
	s := slices.Clone(ts)
	slices.Sort(s)
	return s[len(s)/2]
}
