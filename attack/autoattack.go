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
// alone with the same seeds.
func (aa AutoAttack) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	if len(aa.Attacks) == 0 {
		return nil, fmt.Errorf("autoattack: no attacks")
	}
	r := newRunner(m, x)
	n, d := x.Shape[0], r.dim
	bs := aa.Batch
	if bs <= 0 {
		bs = n
	}
	robust, err := cleanRight(m, x, y, bs)
	if err != nil {
		return nil, err
	}
	adv := append([]float32(nil), x.F...)
	for a, at := range aa.Attacks {
		var idx []int
		for i, ok := range robust {
			if ok {
				idx = append(idx, i)
			}
		}
		for lo := 0; lo < len(idx); lo += bs {
			part := idx[lo:min(lo+bs, len(idx))]
			xb := graph.F32(append([]int{len(part)}, r.shape...), gather(nil, x.F, part, d))
			yb := make([]int, len(part))
			for k, i := range part {
				yb[k] = y[i]
			}
			res, err := at.Run(m, xb, yb, eps, s.sub(part))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", at.Name(), err)
			}
			for k, i := range part {
				if res.Fooled[k] {
					robust[i] = false
					copy(adv[i*d:(i+1)*d], res.Adv.F[k*d:(k+1)*d])
				}
			}
			if aa.Progress != nil {
				aa.Progress(a, min(lo+bs, len(idx)), len(idx))
			}
		}
	}
	res := &Result{Adv: graph.F32(x.Shape, adv), Fooled: make([]bool, n)}
	for i, ok := range robust {
		res.Fooled[i] = !ok
	}
	return res, nil
}

// cleanRight says, per sample, whether m classifies x right, in batches of bs.
func cleanRight(m Model, x *graph.Tensor, y []int, bs int) ([]bool, error) {
	n, d := x.Shape[0], graph.Numel(x.Shape[1:])
	right := make([]bool, 0, n)
	for lo := 0; lo < n; lo += bs {
		hi := min(lo+bs, n)
		xb := graph.F32(append([]int{hi - lo}, x.Shape[1:]...), x.F[lo*d:hi*d])
		ok, err := predictions(newRunner(m, xb), xb.F, hi-lo, y[lo:hi])
		if err != nil {
			return nil, err
		}
		right = append(right, ok...)
	}
	return right, nil
}
