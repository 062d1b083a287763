package hyperat

import (
	"math/rand/v2"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// MART (Wang et al. 2020): x' = PGD on the cross-entropy from a uniform
// random start; loss BCE(p(x'), y) + beta KL(p(x) || p(x')) (1 - p_y(x)),
// with BCE = CE(f(x'), y) - log(1.0001 - max_{k != y} p_k(x')).
type mart struct{ beta float64 }

func init() { defenses["mart"] = func(beta float64) Defense { return mart{beta} } }

func (mart) Name() string     { return "mart" }
func (mart) NeedsClean() bool { return true }

func (mart) Attack(m attack.Model, x *graph.Tensor, y []int, eps float64, steps int, rng func(i int) *rand.Rand) (*graph.Tensor, error) {
	return pgdCE(m, x, y, eps, steps, rng)
}

func (d mart) Loss(clean, adv *graph.Tensor, y []int) (float64, *graph.Tensor, *graph.Tensor) {
	return loss.MeanMART(clean, adv, y, d.beta)
}
