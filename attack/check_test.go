package attack

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// noisy is a linear model whose logits change from run to run, by up to
// scale times their size: a randomized defense.
type noisy struct {
	*linear
	rng   *rand.Rand
	scale float64
}

func (m *noisy) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	z, err := m.linear.Logits(x)
	if err != nil {
		return nil, err
	}
	for i, v := range z.F {
		z.F[i] = v * float32(1+m.scale*(2*m.rng.Float64()-1))
	}
	return z, nil
}

// softmaxed is a linear model that outputs probabilities.
type softmaxed struct{ *linear }

func (m softmaxed) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	z, err := m.linear.Logits(x)
	if err != nil {
		return nil, err
	}
	k := m.Classes()
	zi, p := make([]float64, k), make([]float64, k)
	for i := 0; i < x.Shape[0]; i++ {
		for j := range zi {
			zi[j] = float64(z.F[i*k+j])
		}
		loss.Softmax(zi, p)
		for j := range p {
			z.F[i*k+j] = float32(p[j])
		}
	}
	return z, nil
}

// TestCheck checks that each of AutoAttack's checks warns on the model it is
// for and on no other: a deterministic linear model with logits and 10
// classes passes them all.
func TestCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	shape := []int{1, 4, 4}
	l10 := newLinear(rng, 10, shape)
	x, y := linearCase(rng, l10, 8)
	all := []string{"clean", "pgd-20", "apgd-t", "fab-t", "autoattack"}
	cases := []struct {
		name  string
		m     Model
		names []string
		want  []string // a substring of each warning, in order
	}{
		{"logits, 10 classes", l10, all, nil},
		{"randomized", &noisy{linear: l10, rng: rand.New(rand.NewPCG(1, 2)), scale: 1e-3}, all, []string{"randomized"}},
		{"barely randomized", &noisy{linear: l10, rng: rand.New(rand.NewPCG(1, 2)), scale: 1e-7}, all, nil},
		{"probabilities", softmaxed{l10}, all, []string{"probabilities"}},
		{"3 classes, suite", newLinear(rng, 3, shape), []string{"autoattack"}, []string{"only 3 classes", "fab-t attack 9 target classes"}},
		{"3 classes, no targeted attack", newLinear(rng, 3, shape), []string{"clean", "pgd-20", "square"}, nil},
		{"5 classes, suite", newLinear(rng, 5, shape), []string{"autoattack"}, []string{"apgd-t and fab-t attack 9 target classes, but the model has only 4"}},
		{"5 classes, fab-t", newLinear(rng, 5, shape), []string{"fab-t"}, []string{"fab-t attack 9"}},
		{"2 classes, apgd-t", newLinear(rng, 2, shape), []string{"apgd-t"}, []string{"only 2 classes the targeted DLR loss cannot be used (it needs 4): apgd-t cannot run"}},
	}
	for _, c := range cases {
		yc := make([]int, len(y))
		for i := range yc {
			yc[i] = y[i] % c.m.Classes()
		}
		warn, err := Check(c.m, x, yc, c.names)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(warn) != len(c.want) {
			t.Errorf("%s: %d warnings, want %d: %q", c.name, len(warn), len(c.want), warn)
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(warn[i], w) || strings.Contains(warn[i], "\n") {
				t.Errorf("%s: warning %q does not say %q on one line", c.name, warn[i], w)
			}
		}
	}
	if _, err := Check(l10, x, y[:3], all); err == nil {
		t.Error("Check took 8 images with 3 labels")
	}
}

// TestSuiteWarnings checks check_square_sr's threshold: Square fooling more
// than 0.2% of the images is suspicious.
func TestSuiteWarnings(t *testing.T) {
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i].FooledBy = "apgd-ce"
	}
	recs[0].FooledBy, recs[1].FooledBy = "square", "square"
	if w := SuiteWarnings(recs); w != nil {
		t.Errorf("2 of 1000 images fooled by Square: %q", w)
	}
	recs[2].FooledBy = "square"
	if w := SuiteWarnings(recs); len(w) != 1 || !strings.Contains(w[0], "Square fooled 3 images (0.30% of the 1000)") {
		t.Errorf("3 of 1000 images fooled by Square: %q", w)
	}
	if w := SuiteWarnings(nil); w != nil {
		t.Errorf("no records: %q", w)
	}
}
