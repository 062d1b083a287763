package hyperat

import (
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
)

// Accuracy is clean and PGD accuracy on a set of examples.
type Accuracy struct {
	Clean, Robust float64
	N             int
}

func argmax(z []float32) int {
	b := 0
	for i, v := range z {
		if v > z[b] {
			b = i
		}
	}
	return b
}

// Classifier is what evaluation needs of a model: logits, and input
// gradients of a loss given by its cotangent on the logits.
type Classifier interface {
	Logits(x *graph.Tensor) (*graph.Tensor, error)
	InputGrad(x *graph.Tensor, seed func(*graph.Tensor) *graph.Tensor) (logits, grad *graph.Tensor, err error)
}

// netModel is the adapted net with a fixed parameter set.
type netModel struct {
	n  *Net
	ps *Params
}

func (m netModel) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	l, err := m.n.Forward(x, m.ps)
	if err != nil {
		return nil, err
	}
	return l.Clone(), nil
}

func (m netModel) InputGrad(x *graph.Tensor, seed func(*graph.Tensor) *graph.Tensor) (*graph.Tensor, *graph.Tensor, error) {
	return m.n.InputGrad(x, m.ps, seed)
}

// Evaluate measures clean accuracy and PGD-steps accuracy at eps (the
// project's PGD: uniform start, step 2.5 eps / steps, cross-entropy), in
// batches of bs over idx. The random start comes from seed.
func Evaluate(c Classifier, data Source, idx []int, bs int, eps float64, steps int, seed uint64) (Accuracy, error) {
	var acc Accuracy
	rng := rand.New(rand.NewPCG(seed, 0xe7a1))
	for lo := 0; lo < len(idx); lo += bs {
		hi := min(lo+bs, len(idx))
		x, y, err := data.Batch(idx[lo:hi])
		if err != nil {
			return acc, err
		}
		logits, err := c.Logits(x)
		if err != nil {
			return acc, err
		}
		k := logits.Shape[1]
		for i := range y {
			if argmax(logits.F[i*k:(i+1)*k]) == y[i] {
				acc.Clean++
			}
		}
		if steps > 0 {
			adv, err := pgd(c.InputGrad, x, uniformStart(x, eps, rng), eps, pgdStep(eps, steps), steps, ceSeed(y))
			if err != nil {
				return acc, err
			}
			al, err := c.Logits(adv)
			if err != nil {
				return acc, err
			}
			for i := range y {
				if argmax(al.F[i*k:(i+1)*k]) == y[i] {
					acc.Robust++
				}
			}
		}
		acc.N += len(y)
	}
	if acc.N > 0 {
		acc.Clean /= float64(acc.N)
		acc.Robust /= float64(acc.N)
	}
	return acc, nil
}

// ForDefense is the adapted model with defense m's LoRA alone.
func (t *Trainer) ForDefense(m int) (Classifier, error) {
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
	return netModel{t.Net, cp}, nil
}
