package attack

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// FGSM is the fast gradient sign method (Goodfellow et al. 2015), one step
// of size eps on the cross-entropy:
//
//	x' = clip_[0,1](x + eps * sign(dCE(f(x), y)/dx))
//
// It is deterministic.
type FGSM struct{}

// Name is "fgsm".
func (FGSM) Name() string { return "fgsm" }

// Run implements Attack.
func (FGSM) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	r := newRunner(m, x)
	n, d := x.Shape[0], r.dim
	b := newBall(x.F, eps)
	logits, _, g, err := r.grad(x.F, n, func(i int, z, grad []float64) float64 { return loss.CrossEntropy(z, y[i], grad) })
	if err != nil {
		return nil, err
	}
	adv := append([]float32(nil), x.F...)
	clean := make([]bool, n)
	e := float32(eps)
	for i := 0; i < n; i++ {
		clean[i] = loss.Argmax(logits[i*r.classes:(i+1)*r.classes]) == y[i]
		if !clean[i] {
			continue
		}
		row := adv[i*d : (i+1)*d]
		for j := range row {
			row[j] += e * sign(g[i*d+j])
		}
		b.project(row, i*d)
	}
	return finish(r, x, y, adv, clean)
}

// PGD is projected gradient descent (Madry et al. 2018) in the L-infinity
// ball, the one implementation of it: the evaluation's pgd-K and cw-K (Run)
// and the training attacks of the defenses (Perturb). From a start, Steps
// signed-gradient steps on a loss, each followed by the projection P onto
// the ball and [0, 1]:
//
//	x' = P(start)
//	repeat Steps times: x' = P(x' + alpha * sign(dL(f(x'))/dx'))
//
// with alpha = 2.5 eps / Steps unless Alpha is set. The final iterate is the
// example (no early stopping, no best-iterate selection). pgd-K is PGD on
// the cross-entropy from a uniform start x + U(-eps, eps), cw-K the same on
// the margin loss (Carlini & Wagner's loss in the L-infinity PGD form of
// Madry et al.).
type PGD struct {
	Steps int
	// Alpha is the step size; 0 means 2.5 eps / Steps.
	Alpha float64
	// Margin selects the margin loss max_{k != y} z_k - z_y (cw-K) instead
	// of the cross-entropy (pgd-K) in Run.
	Margin bool
}

// Name is pgd-K or cw-K.
func (p PGD) Name() string {
	if p.Margin {
		return fmt.Sprintf("cw-%d", p.Steps)
	}
	return fmt.Sprintf("pgd-%d", p.Steps)
}

// Start perturbs the first iterate of sample i in place: row holds the
// sample's pixels on entry, and PGD projects it onto the ball afterwards.
type Start func(i int, row []float32)

// UniformStart adds U(-eps, eps) to every pixel, drawing from rng(i) for
// sample i (Run: each sample's own stream; the defenses: each image's own
// stream of the iteration).
func UniformStart(eps float64, rng func(i int) *rand.Rand) Start {
	return func(i int, row []float32) {
		r := rng(i)
		for j := range row {
			row[j] += float32((2*r.Float64() - 1) * eps)
		}
	}
}

// GaussianStart adds sigma N(0, 1) to every pixel, drawing from rng(i) for
// sample i (TRADES starts at sigma 0.001).
func GaussianStart(sigma float64, rng func(i int) *rand.Rand) Start {
	return func(i int, row []float32) {
		r := rng(i)
		for j := range row {
			row[j] += float32(sigma * r.NormFloat64())
		}
	}
}

func (p PGD) alpha(eps float64) (float32, error) {
	if p.Steps < 1 {
		return 0, fmt.Errorf("%s: steps must be at least 1", p.Name())
	}
	if !(p.Alpha >= 0) {
		return 0, fmt.Errorf("%s: negative step size %v", p.Name(), p.Alpha)
	}
	if p.Alpha == 0 {
		return float32(2.5 * eps / float64(p.Steps)), nil
	}
	return float32(p.Alpha), nil
}

// Run implements Attack: pgd-K or cw-K from the uniform start, each sample
// drawing from its own stream, on the samples the model classifies right.
func (p PGD) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	if _, err := p.alpha(eps); err != nil {
		return nil, err
	}
	r := newRunner(m, x)
	n := x.Shape[0]
	clean, err := predictions(r, x.F, n, y)
	if err != nil {
		return nil, err
	}
	var idx []int
	for i, ok := range clean {
		if ok {
			idx = append(idx, i)
		}
	}
	rule := loss.CrossEntropy
	if p.Margin {
		rule = loss.Margin
	}
	name := p.Name()
	start := UniformStart(eps, func(i int) *rand.Rand { return s.rng(name, i) })
	adv, err := p.ascend(r, x.F, eps, idx, start, func(k int, z, g []float64) float64 { return rule(z, y[idx[k]], g) })
	if err != nil {
		return nil, err
	}
	return finish(r, x, y, adv, clean)
}

// Perturb runs PGD on every sample of x (also those the model gets wrong)
// from start, ascending rule (rule's row i is sample i), and returns the
// final iterates, without running the model on them: the defenses' training
// attacks. eps 0 is allowed (the eps warm-up starts there); pixels are not
// checked.
func (p PGD) Perturb(m Model, x *graph.Tensor, eps float64, start Start, rule loss.Rule) (*graph.Tensor, error) {
	switch {
	case m == nil:
		return nil, errors.New("no model")
	case !(eps >= 0 && eps <= 1):
		return nil, fmt.Errorf("eps must be in [0, 1] (pixels are in [0, 1]), got %v", eps)
	case x == nil || x.DType != graph.Float32 || len(x.Shape) != 4 || x.Shape[0] < 1 || len(x.F) != x.Numel():
		return nil, fmt.Errorf("images must be float32 [N, C, H, W] with N >= 1, got %v", shapeOf(x))
	}
	idx := make([]int, x.Shape[0])
	for i := range idx {
		idx[i] = i
	}
	adv, err := p.ascend(newRunner(m, x), x.F, eps, idx, start, rule)
	if err != nil {
		return nil, err
	}
	return graph.F32(x.Shape, adv), nil
}

// ascend is PGD itself on the samples idx of x (flat rows); the others keep
// x. rule's row k is sample idx[k].
func (p PGD) ascend(r *runner, x []float32, eps float64, idx []int, start Start, rule loss.Rule) ([]float32, error) {
	a, err := p.alpha(eps)
	if err != nil {
		return nil, err
	}
	d := r.dim
	b := newBall(x, eps)
	adv := append([]float32(nil), x...)
	for _, i := range idx {
		row := adv[i*d : (i+1)*d]
		start(i, row)
		b.project(row, i*d)
	}
	if len(idx) == 0 {
		return adv, nil
	}
	var buf []float32
	for range p.Steps {
		cur := adv // every sample, in order
		if len(idx) < r.full {
			buf = gather(buf, adv, idx, d)
			cur = buf
		}
		_, _, g, err := r.grad(cur, len(idx), rule)
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			row := adv[i*d : (i+1)*d]
			for j := range row {
				row[j] += a * sign(g[k*d+j])
			}
			b.project(row, i*d)
		}
	}
	return adv, nil
}
