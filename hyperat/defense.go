package hyperat

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// A Defense is one adversarial-tuning task: an attack that crafts x' against
// the current model, and a loss of the clean and adversarial logits. Adding a
// defense is one small file that registers itself.
type Defense interface {
	Name() string
	// Attack returns x' in the eps ball around x (and in [0, 1]), querying
	// the model under training; the random start of image i draws from
	// rng(i), its own stream, so that an image's example does not depend on
	// the others it is attacked with (the micro-batch split).
	Attack(m attack.Model, x *graph.Tensor, y []int, eps float64, steps int, rng func(i int) *rand.Rand) (*graph.Tensor, error)
	// NeedsClean reports whether Loss reads the clean logits.
	NeedsClean() bool
	// Loss returns the batch loss and its gradients with respect to the clean
	// logits (nil when unused) and the adversarial logits.
	Loss(clean, adv *graph.Tensor, y []int) (loss float64, gClean, gAdv *graph.Tensor)
}

var defenses = map[string]func(beta float64) Defense{}

// Defenses lists the registered defense names.
func Defenses() []string {
	var names []string
	for n := range defenses {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewDefense makes a defense by name; beta weighs TRADES' and MART's
// regularizer (6 in both papers).
func NewDefense(name string, beta float64) (Defense, error) {
	mk, ok := defenses[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("unknown defense %q (known: %s)", name, strings.Join(Defenses(), ", "))
	}
	return mk(beta), nil
}

// pgdCE is the training attack of PGD-AT and MART: attack.PGD with steps
// steps of 2.5 eps / steps on the cross-entropy, from x + U(-eps, eps), on
// every example.
func pgdCE(m attack.Model, x *graph.Tensor, y []int, eps float64, steps int, rng func(i int) *rand.Rand) (*graph.Tensor, error) {
	return attack.PGD{Steps: steps}.Perturb(m, x, eps, attack.UniformStart(eps, rng),
		func(i int, z, g []float64) float64 { return loss.CrossEntropy(z, y[i], g) })
}
