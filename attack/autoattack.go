package attack

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// AutoAttack is the standard AutoAttack suite (Croce & Hein 2020) in the
// L-infinity norm: APGD-CE, APGD-T, FAB-T and Square, in this order, each
// run only on the samples that every earlier attack failed on. A sample is
// robust only if all of them fail (per-sample worst case); a fooled sample's
// example is the one of the first attack that fooled it.
type AutoAttack struct {
	// Attacks run in order; NewAutoAttack gives the standard four.
	Attacks []Attack
	// Batch is the most samples given to an attack at once (the samples
	// still robust are re-batched before each attack); 0 means all.
	Batch int
	// Progress, when set, is called after each batch of each attack with
	// the attack's index, the samples it has finished, and how many it
	// runs on.
	Progress func(attack int, done, total int)
}

// NewAutoAttack is the standard suite: apgd-ce, apgd-t, fab-t, square.
func NewAutoAttack() AutoAttack {
	return AutoAttack{Attacks: []Attack{NewAPGDCE(), NewAPGDT(), NewFABT(), NewSquare()}}
}

// Name is "autoattack".
func (AutoAttack) Name() string { return "autoattack" }

// Run implements Attack. Each attack keeps its own random streams (keyed by
// its name), so a sample meets the same attack here as when that attack runs
// alone with the same seeds. An attack the model has too few classes for is
// left out (apgd-t below 4 classes: the targeted DLR loss reads the 4th
// highest logit; AutoAttack itself fails there, after its class-count
// check's warning, which Check gives here).
func (aa AutoAttack) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	if len(aa.Attacks) == 0 {
		return nil, fmt.Errorf("autoattack: no attacks")
	}
	r := newRunner(m, x)
	n := x.Shape[0]
	bs := aa.Batch
	if bs <= 0 {
		bs = n
	}
	pred, err := cleanClasses(m, x, bs)
	if err != nil {
		return nil, err
	}
	res := &Result{Adv: graph.F32(x.Shape, append([]float32(nil), x.F...)), Fooled: make([]bool, n),
		Pred: pred, By: make([]string, n)}
	for i := range res.Fooled {
		res.Fooled[i] = pred[i] != y[i]
	}
	for a, at := range aa.Attacks {
		if supports(at, r.classes) != nil {
			continue
		}
		var idx []int
		for i, f := range res.Fooled {
			if !f {
				idx = append(idx, i)
			}
		}
		for lo := 0; lo < len(idx); lo += bs {
			part := idx[lo:min(lo+bs, len(idx))]
			if err := aa.runPart(m, at, x, y, eps, s, part, res); err != nil {
				return nil, err
			}
			if aa.Progress != nil {
				aa.Progress(a, min(lo+bs, len(idx)), len(idx))
			}
		}
	}
	return res, nil
}

// runPart runs the attack at on the samples part (all robust so far) and
// records those it fools in res.
func (aa AutoAttack) runPart(m Model, at Attack, x *graph.Tensor, y []int, eps float64, s Seeds, part []int, res *Result) error {
	d := graph.Numel(x.Shape[1:])
	xb := graph.F32(append([]int{len(part)}, x.Shape[1:]...), gather(nil, x.F, part, d))
	yb := make([]int, len(part))
	for k, i := range part {
		yb[k] = y[i]
	}
	r, err := at.Run(m, xb, yb, eps, s.sub(part))
	if err != nil {
		return fmt.Errorf("%s: %w", at.Name(), err)
	}
	for k, i := range part {
		if r.Fooled[k] {
			res.Fooled[i], res.Pred[i], res.By[i] = true, r.Pred[k], at.Name()
			copy(res.Adv.F[i*d:(i+1)*d], r.Adv.F[k*d:(k+1)*d])
		}
	}
	return nil
}

// cleanClasses is the class m gives each image of x, in batches of bs.
func cleanClasses(m Model, x *graph.Tensor, bs int) ([]int, error) {
	n, d := x.Shape[0], graph.Numel(x.Shape[1:])
	pred := make([]int, 0, n)
	for lo := 0; lo < n; lo += bs {
		hi := min(lo+bs, n)
		xb := graph.F32(append([]int{hi - lo}, x.Shape[1:]...), x.F[lo*d:hi*d])
		p, err := classify(newRunner(m, xb), xb.F, hi-lo)
		if err != nil {
			return nil, err
		}
		pred = append(pred, p...)
	}
	return pred, nil
}

// cleanRight says, per sample, whether m classifies x right, in batches of bs.
func cleanRight(m Model, x *graph.Tensor, y []int, bs int) ([]bool, error) {
	pred, err := cleanClasses(m, x, bs)
	if err != nil {
		return nil, err
	}
	right := make([]bool, len(pred))
	for i, p := range pred {
		right[i] = p == y[i]
	}
	return right, nil
}
