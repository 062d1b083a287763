package hyperat

import (
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
)

// TRADES (Zhang et al. 2019): x' = PGD on KL(p(x) || p(x')) from
// x + 0.001 N(0, I); loss CE(f(x), y) + beta KL(p(x) || p(x')).
type trades struct{ beta float64 }

func init() { defenses["trades"] = func(beta float64) Defense { return trades{beta} } }

func (trades) Name() string     { return "trades" }
func (trades) NeedsClean() bool { return true }

func (d trades) Attack(m Classifier, x *graph.Tensor, y []int, eps float64, steps int, rng *rand.Rand) (*graph.Tensor, error) {
	clean, err := m.Logits(x)
	if err != nil {
		return nil, err
	}
	seed := func(z *graph.Tensor) *graph.Tensor {
		_, _, gq := klDiv(clean, z)
		return gq
	}
	return pgd(m.InputGrad, x, gaussianStart(x, 0.001, rng), eps, pgdStep(eps, steps), steps, seed)
}

func (d trades) Loss(clean, adv *graph.Tensor, y []int) (float64, *graph.Tensor, *graph.Tensor) {
	ce, gc := crossEntropy(clean, y)
	kl, gp, gq := klDiv(clean, adv)
	b := float32(d.beta)
	for i := range gc.F {
		gc.F[i] += b * gp.F[i]
		gq.F[i] *= b
	}
	return ce + d.beta*kl, gc, gq
}
