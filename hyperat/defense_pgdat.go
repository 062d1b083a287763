package hyperat

import (
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
)

// PGD-AT (Madry et al. 2018): x' = PGD on the cross-entropy from a uniform
// random start; loss CE(f(x'), y).
type pgdAT struct{}

func init() { defenses["pgdat"] = func(float64) Defense { return pgdAT{} } }

func (pgdAT) Name() string     { return "pgdat" }
func (pgdAT) NeedsClean() bool { return false }

func (pgdAT) Attack(m Classifier, x *graph.Tensor, y []int, eps float64, steps int, rng *rand.Rand) (*graph.Tensor, error) {
	return pgd(m.InputGrad, x, uniformStart(x, eps, rng), eps, pgdStep(eps, steps), steps, ceSeed(y))
}

func (pgdAT) Loss(_, adv *graph.Tensor, y []int) (float64, *graph.Tensor, *graph.Tensor) {
	l, g := crossEntropy(adv, y)
	return l, nil, g
}
