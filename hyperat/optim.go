package hyperat

import (
	"math"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), as
// torch.optim.AdamW: p -= lr * (wd * p + mhat / (sqrt(vhat) + eps)).
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	Step                           int
	M, V                           []*graph.Tensor
}

// NewAdamW makes moment buffers for params.
func NewAdamW(params []*graph.Tensor, wd float64) *AdamW {
	o := &AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: wd}
	for _, p := range params {
		o.M = append(o.M, graph.NewTensor(graph.Float32, p.Shape))
		o.V = append(o.V, graph.NewTensor(graph.Float32, p.Shape))
	}
	return o
}

// Update applies one step with learning rate lr.
func (o *AdamW) Update(params, grads []*graph.Tensor, lr float64) {
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	decay := float32(1 - lr*o.WeightDecay)
	for i, p := range params {
		w, m, v, g := p.F, o.M[i].F, o.V[i].F, grads[i].F
		step := func(lo, hi int) {
			for j := lo; j < hi; j++ {
				m[j] = b1*m[j] + (1-b1)*g[j]
				v[j] = b2*v[j] + (1-b2)*g[j]*g[j]
				mh := float64(m[j]) / bc1
				vh := float64(v[j]) / bc2
				w[j] = w[j]*decay - float32(lr*mh/(math.Sqrt(vh)+o.Eps))
			}
		}
		// each element on its own: the same bits however the cores split
		// it, and on many cores not the serial part of every iteration
		if len(w) < adamGrain {
			step(0, len(w))
		} else {
			kernels.ParallelFor(len(w), step)
		}
	}
}

// adamGrain is the size of a tensor below which its update runs on one core.
const adamGrain = 1 << 14

// clipGradNorm scales grads so that their global L2 norm is at most maxNorm
// (no-op for maxNorm <= 0); it returns the norm before clipping.
func clipGradNorm(grads []*graph.Tensor, maxNorm float64) float64 {
	s := 0.0
	for _, g := range grads {
		for _, v := range g.F {
			s += float64(v) * float64(v)
		}
	}
	norm := math.Sqrt(s)
	if maxNorm > 0 && norm > maxNorm {
		c := float32(maxNorm / (norm + 1e-6))
		for _, g := range grads {
			for j := range g.F {
				g.F[j] *= c
			}
		}
	}
	return norm
}

// oneCycle is the learning rate at iteration it of total: a linear warm-up
// over the first warm fraction, then a cosine down to zero.
func oneCycle(lr float64, it, total int, warm float64) float64 {
	w := int(math.Round(warm * float64(total)))
	if it < w {
		return lr * float64(it+1) / float64(w)
	}
	rest := max(total-w, 1)
	return lr * 0.5 * (1 + math.Cos(math.Pi*float64(it-w)/float64(rest)))
}

// epsAt is the perturbation radius at iteration it: linear from 0 to eps over
// the first warm fraction of the run, and never above eps: the warm-up length
// w need not be a whole number of iterations, and (it+1)/w exceeds 1 on the
// last iteration inside it when it is not.
func epsAt(eps float64, it, total int, warm float64) float64 {
	w := warm * float64(total)
	if w <= 0 || float64(it) >= w {
		return eps
	}
	return eps * min(float64(it+1)/w, 1)
}
