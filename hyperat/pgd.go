package hyperat

import (
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
)

// gradFn returns logits and dL/dx for the cotangent seed(logits).
type gradFn func(x *graph.Tensor, seed func(*graph.Tensor) *graph.Tensor) (logits, grad *graph.Tensor, err error)

// pgd is projected gradient ascent in the L-infinity ball:
//
//	x' = start
//	repeat steps: x' = clip(proj_eps(x' + alpha * sign(dL/dx')), 0, 1)
//
// with L given by seed (its cotangent on the logits) and start projected too.
func pgd(f gradFn, x, start *graph.Tensor, eps, alpha float64, steps int, seed func(*graph.Tensor) *graph.Tensor) (*graph.Tensor, error) {
	adv := start.Clone()
	project(adv, x, float32(eps))
	for s := 0; s < steps; s++ {
		_, g, err := f(adv, seed)
		if err != nil {
			return nil, err
		}
		a := float32(alpha)
		for i, d := range g.F {
			switch {
			case d > 0:
				adv.F[i] += a
			case d < 0:
				adv.F[i] -= a
			}
		}
		project(adv, x, float32(eps))
	}
	return adv, nil
}

// project clips adv into [x - eps, x + eps] and [0, 1].
func project(adv, x *graph.Tensor, eps float32) {
	for i, v := range adv.F {
		lo, hi := max(x.F[i]-eps, 0), min(x.F[i]+eps, 1)
		adv.F[i] = min(max(v, lo), hi)
	}
}

// uniformStart is x + U(-eps, eps).
func uniformStart(x *graph.Tensor, eps float64, rng *rand.Rand) *graph.Tensor {
	s := x.Clone()
	for i := range s.F {
		s.F[i] += float32((2*rng.Float64() - 1) * eps)
	}
	return s
}

// gaussianStart is x + sigma N(0, 1) (TRADES starts at 0.001).
func gaussianStart(x *graph.Tensor, sigma float64, rng *rand.Rand) *graph.Tensor {
	s := x.Clone()
	for i := range s.F {
		s.F[i] += float32(sigma * rng.NormFloat64())
	}
	return s
}
