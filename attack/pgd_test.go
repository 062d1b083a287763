package attack

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// Run and Perturb are one PGD: Perturb from Run's start (each sample's own
// stream) on the cross-entropy gives Run's examples for the samples the
// model gets right; it also attacks the others, and stays in the ball.
func TestPerturbIsRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	l := newLinear(rng, 5, []int{2, 4, 4})
	x, y := linearCase(rng, l, 12)
	for i := 0; i < len(y); i += 3 {
		y[i] = (y[i] + 1) % 5 // a quarter are wrong on x
	}
	const eps = 0.08
	p := PGD{Steps: 7}
	s := Seeds{Seed: 9}
	res, err := p.Run(l, x, y, eps, s)
	if err != nil {
		t.Fatal(err)
	}
	start := UniformStart(eps, func(i int) *rand.Rand { return s.rng(p.Name(), i) })
	ce := func(i int, z, g []float64) float64 { return loss.CrossEntropy(z, y[i], g) }
	adv, err := p.Perturb(l, x, eps, start, ce)
	if err != nil {
		t.Fatal(err)
	}
	d := graph.Numel(l.shape)
	moved := 0
	for i := range y {
		a, r := adv.F[i*d:(i+1)*d], res.Adv.F[i*d:(i+1)*d]
		for j, v := range a {
			if math.Abs(float64(v)-float64(x.F[i*d+j])) > eps || v < 0 || v > 1 {
				t.Fatalf("sample %d, pixel %d: %v is outside the ball around %v", i, j, v, x.F[i*d+j])
			}
		}
		if i%3 != 0 && !slices.Equal(a, r) {
			t.Errorf("sample %d: Perturb and Run give different examples", i)
		}
		if i%3 == 0 && !slices.Equal(a, x.F[i*d:(i+1)*d]) {
			moved++
		}
	}
	if moved != (len(y)+2)/3 {
		t.Errorf("Perturb moved %d of the %d samples wrong on x, want all", moved, (len(y)+2)/3)
	}
	again, err := p.Perturb(l, x, eps, start, ce)
	if err != nil || !slices.Equal(again.F, adv.F) {
		t.Errorf("Perturb is not repeatable: %v", err)
	}
}

// A training attack draws its start from one stream, samples in order, and
// eps 0 (the start of the eps warm-up) returns x.
func TestPerturbSharedStreamAndZeroEps(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	l := newLinear(rng, 3, []int{1, 3, 3})
	x, y := linearCase(rng, l, 4)
	ce := func(i int, z, g []float64) float64 { return loss.CrossEntropy(z, y[i], g) }
	one := rand.New(rand.NewPCG(1, 2))
	var order []int
	start := func(i int, row []float32) {
		order = append(order, i)
		GaussianStart(0.01, func(int) *rand.Rand { return one })(i, row)
	}
	if _, err := (PGD{Steps: 2}).Perturb(l, x, 0.05, start, ce); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, []int{0, 1, 2, 3}) {
		t.Errorf("starts drawn for samples %v, want 0, 1, 2, 3", order)
	}
	adv, err := PGD{Steps: 3}.Perturb(l, x, 0, UniformStart(0, func(int) *rand.Rand { return one }), ce)
	if err != nil || !slices.Equal(adv.F, x.F) {
		t.Errorf("eps 0: %v, example differs from x", err)
	}
	if _, err := (PGD{Steps: 0}).Perturb(l, x, 0.1, start, ce); err == nil {
		t.Errorf("0 steps accepted")
	}
}
