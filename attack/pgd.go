package attack

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
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
	logits, _, g, err := r.grad(x.F, n, func(i int, z, grad []float64) float64 { return CrossEntropy(z, y[i], grad) })
	if err != nil {
		return nil, err
	}
	adv := append([]float32(nil), x.F...)
	clean := make([]bool, n)
	e := float32(eps)
	for i := 0; i < n; i++ {
		clean[i] = argmax(logits[i*r.classes:(i+1)*r.classes]) == y[i]
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
// ball: from a uniform random start, Steps signed-gradient steps on Loss,
// each followed by the projection P onto the ball and [0, 1]:
//
//	x' = P(x + U(-eps, eps))
//	repeat Steps times: x' = P(x' + alpha * sign(dL(f(x'), y)/dx'))
//
// with alpha = 2.5 eps / Steps unless Alpha is set. The final iterate is the
// example (no early stopping, no best-iterate selection). pgd-K is PGD on
// the cross-entropy, cw-K the same on the margin loss (Carlini & Wagner's
// loss in the L-infinity PGD form of Madry et al.).
type PGD struct {
	Steps int
	// Alpha is the step size; 0 means 2.5 eps / Steps.
	Alpha float64
	// Margin selects the margin loss max_{k != y} z_k - z_y (cw-K) instead
	// of the cross-entropy (pgd-K).
	Margin bool
}

// Name is pgd-K or cw-K.
func (p PGD) Name() string {
	if p.Margin {
		return fmt.Sprintf("cw-%d", p.Steps)
	}
	return fmt.Sprintf("pgd-%d", p.Steps)
}

// Run implements Attack.
func (p PGD) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	if p.Steps < 1 {
		return nil, fmt.Errorf("%s: steps must be at least 1", p.Name())
	}
	if p.Alpha < 0 {
		return nil, fmt.Errorf("%s: negative step size %v", p.Name(), p.Alpha)
	}
	alpha := p.Alpha
	if alpha == 0 {
		alpha = 2.5 * eps / float64(p.Steps)
	}
	r := newRunner(m, x)
	n, d := x.Shape[0], r.dim
	b := newBall(x.F, eps)
	clean, err := predictions(r, x.F, n, y)
	if err != nil {
		return nil, err
	}
	adv := append([]float32(nil), x.F...)
	var idx []int
	for i := 0; i < n; i++ {
		if !clean[i] {
			continue
		}
		idx = append(idx, i)
		rng := s.rng(p.Name(), i)
		row := adv[i*d : (i+1)*d]
		for j := range row {
			row[j] += float32((2*rng.Float64() - 1) * eps)
		}
		b.project(row, i*d)
	}
	if len(idx) == 0 {
		return finish(r, x, y, adv, clean)
	}
	loss := CrossEntropy
	if p.Margin {
		loss = Margin
	}
	obj := func(k int, z, g []float64) float64 { return loss(z, y[idx[k]], g) }
	a := float32(alpha)
	var cur []float32
	for step := 0; step < p.Steps; step++ {
		cur = gather(cur, adv, idx, d)
		_, _, g, err := r.grad(cur, len(idx), obj)
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
	return finish(r, x, y, adv, clean)
}
