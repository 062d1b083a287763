package hyperat

import (
	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Accuracy is clean and PGD accuracy on a set of examples.
type Accuracy struct {
	Clean, Robust float64
	N             int
}

// netModel is the adapted net with a fixed parameter set: the model the
// defenses attack during tuning, with its products in Config.AttackPrecision,
// and each defense's LoRA in validation and the final table, in float32.
type netModel struct {
	n    *Net
	ps   *Params
	prec kernels.Precision
}

var _ attack.Model = netModel{}

func (m netModel) Classes() int { return m.n.Classes }

func (m netModel) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	l, err := m.n.forward(x, m.ps, m.prec)
	if err != nil {
		return nil, err
	}
	return l.Clone(), nil
}

func (m netModel) InputGrad(x *graph.Tensor, seed func(*graph.Tensor) *graph.Tensor) (*graph.Tensor, *graph.Tensor, error) {
	return m.n.inputGrad(x, m.ps, seed, m.prec)
}

// Evaluate measures clean accuracy and pgd-steps accuracy at eps on the
// examples idx of data, loaded in batches of bs: the attack hyperat-eval
// runs as --attacks pgd-K (attack.PGD from a uniform start, steps of
// 2.5 eps / steps on the cross-entropy), counted by attack.Correct as
// attack.Evaluate counts it, with example idx[i]'s random start drawn from
// the stream of seed named by idx[i]. On the first N test images it gives
// what hyperat-eval --limit N --seed gives.
func Evaluate(m attack.Model, data Source, idx []int, bs int, eps float64, steps int, seed uint64) (Accuracy, error) {
	var acc Accuracy
	var clean, robust int
	for lo := 0; lo < len(idx); lo += bs {
		hi := min(lo+bs, len(idx))
		x, y, err := data.Batch(idx[lo:hi])
		if err != nil {
			return acc, err
		}
		s := attack.Seeds{Seed: seed, IDs: make([]uint64, hi-lo)}
		for k, i := range idx[lo:hi] {
			s.IDs[k] = uint64(i)
		}
		c, err := attack.Correct(m, x, y, eps, nil, bs, s, nil)
		if err != nil {
			return acc, err
		}
		clean += c
		if steps > 0 {
			r, err := attack.Correct(m, x, y, eps, attack.PGD{Steps: steps}, bs, s, nil)
			if err != nil {
				return acc, err
			}
			robust += r
		}
		acc.N += hi - lo
	}
	if acc.N > 0 {
		acc.Clean = float64(clean) / float64(acc.N)
		acc.Robust = float64(robust) / float64(acc.N)
	}
	return acc, nil
}

// ForDefense is the adapted model with defense m's LoRA alone.
func (t *Trainer) ForDefense(m int) (attack.Model, error) {
	ps, err := t.LoRAFor(m)
	if err != nil {
		return nil, err
	}
	// copy the factors: LoRAFor reuses its buffers
	cp := &Params{Train: ps.Train}
	for i := range ps.A {
		cp.A = append(cp.A, ps.A[i].Clone())
		cp.B = append(cp.B, ps.B[i].Clone())
	}
	return netModel{t.Net, cp, kernels.FP32}, nil
}
