package hyperat

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/hyperat/hyperat/graph"
)

// A Defense is one adversarial-tuning task: an attack that crafts x' against
// the current model, and a loss of the clean and adversarial logits. Adding a
// defense is one small file that registers itself.
type Defense interface {
	Name() string
	// Attack returns x' in the eps ball around x (and in [0, 1]), querying
	// the model under training.
	Attack(m Classifier, x *graph.Tensor, y []int, eps float64, steps int, rng *rand.Rand) (*graph.Tensor, error)
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

// ceSeed is the cotangent of the summed cross-entropy (PGD's objective; the
// scale does not matter to a sign step).
func ceSeed(y []int) func(*graph.Tensor) *graph.Tensor {
	return func(z *graph.Tensor) *graph.Tensor {
		_, g := crossEntropy(z, y)
		return g
	}
}

// pgdStep is the step size the project uses for a K-step attack: 2.5 eps / K.
func pgdStep(eps float64, steps int) float64 { return 2.5 * eps / float64(max(steps, 1)) }
