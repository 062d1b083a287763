package hyperat

import (
	"math/rand/v2"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// PGD-AT (Madry et al. 2018): x' = PGD on the cross-entropy from a uniform
// random start; loss CE(f(x'), y).
type pgdAT struct{}

func init() { defenses["pgdat"] = func(float64) Defense { return pgdAT{} } }

func (pgdAT) Name() string     { return "pgdat" }
func (pgdAT) NeedsClean() bool { return false }

func (pgdAT) Attack(m attack.Model, x *graph.Tensor, y []int, eps float64, steps int, rng func(i int) *rand.Rand) (*graph.Tensor, error) {
	return pgdCE(m, x, y, eps, steps, rng)
}

func (pgdAT) Loss(_, adv *graph.Tensor, y []int) (float64, *graph.Tensor, *graph.Tensor) {
	l, g := loss.MeanCE(adv, y)
	return l, nil, g
}
