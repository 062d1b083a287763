package hyperat

import (
	"math/rand/v2"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// TRADES (Zhang et al. 2019): x' = PGD on KL(p(x) || p(x')) from
// x + 0.001 N(0, I); loss CE(f(x), y) + beta KL(p(x) || p(x')).
type trades struct{ beta float64 }

func init() { defenses["trades"] = func(beta float64) Defense { return trades{beta} } }

func (trades) Name() string     { return "trades" }
func (trades) NeedsClean() bool { return true }

func (d trades) Attack(m attack.Model, x *graph.Tensor, y []int, eps float64, steps int, rng func(i int) *rand.Rand) (*graph.Tensor, error) {
	clean, err := m.Logits(x)
	if err != nil {
		return nil, err
	}
	// the clean probabilities p(x), one row per example
	n, k := clean.Shape[0], clean.Shape[1]
	p := make([][]float64, n)
	for i := range p {
		z := make([]float64, k)
		for j, v := range clean.F[i*k : (i+1)*k] {
			z[j] = float64(v)
		}
		p[i] = make([]float64, k)
		loss.Softmax(z, p[i])
	}
	return attack.PGD{Steps: steps}.Perturb(m, x, eps, attack.GaussianStart(0.001, rng),
		func(i int, z, g []float64) float64 { return loss.KL(p[i], z, g) })
}

func (d trades) Loss(clean, adv *graph.Tensor, y []int) (float64, *graph.Tensor, *graph.Tensor) {
	ce, gc := loss.MeanCE(clean, y)
	kl, gp, gq := loss.MeanKL(clean, adv)
	b := float32(d.beta)
	for i := range gc.F {
		gc.F[i] += b * gp.F[i]
		gq.F[i] *= b
	}
	return ce + d.beta*kl, gc, gq
}
