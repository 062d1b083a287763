package attack

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// Model is the project's one classifier interface: what the attacks, the
// defenses' training attacks and every evaluation need of a classifier.
// *model.Classifier (an ONNX file) implements it, and so does the
// LoRA-adapted net the defenses attack during tuning.
type Model interface {
	// Classes is the number of logits.
	Classes() int
	// Logits runs the model on x [N, C, H, W] and returns [N, Classes()].
	Logits(x *graph.Tensor) (*graph.Tensor, error)
	// InputGrad runs the model on x, asks seed for dL/dlogits given the
	// logits, and returns the logits and dL/dx.
	InputGrad(x *graph.Tensor, seed func(logits *graph.Tensor) *graph.Tensor) (logits, grad *graph.Tensor, err error)
}

// LossGrad runs m on x and returns the logits, the loss of every sample
// (rule of its row of logits) and the gradient of the summed loss with
// respect to x (each sample's own gradient, since samples do not interact).
func LossGrad(m Model, x *graph.Tensor, rule loss.Rule) (logits *graph.Tensor, losses []float64, grad *graph.Tensor, err error) {
	logits, grad, err = m.InputGrad(x, func(l *graph.Tensor) *graph.Tensor {
		var s *graph.Tensor
		losses, s = loss.Batch(l, 1, rule)
		return s
	})
	return logits, losses, grad, err
}

// runner runs a model on subsets of a batch. The engine compiles one program
// per batch size, so a subset of k rows is padded (with copies of its last
// row) up to the next size of a fixed ladder, at most the full batch: a run
// whose batch shrinks as samples are fooled compiles a few programs, not one
// per count.
type runner struct {
	m       Model
	classes int
	dim     int   // C*H*W
	shape   []int // [C, H, W]
	full    int   // the batch size of the call; padding never exceeds it
}

func newRunner(m Model, x *graph.Tensor) *runner {
	return &runner{m: m, classes: m.Classes(), dim: graph.Numel(x.Shape[1:]),
		shape: x.Shape[1:], full: x.Shape[0]}
}

// bucket is the batch size a subset of k rows runs at: the smallest ladder
// size 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5 times them)
// that holds k, or the full batch if that is smaller.
func (r *runner) bucket(k int) int {
	if k >= r.full {
		return k
	}
	for p := 1; ; p *= 2 {
		if p >= k {
			return min(p, r.full)
		}
		if p >= 2 && p+p/2 >= k {
			return min(p+p/2, r.full)
		}
	}
}

// pad copies rows (k images, flat) into a batch tensor of the bucket size.
func (r *runner) pad(rows []float32, k int) *graph.Tensor {
	b := r.bucket(k)
	x := graph.NewTensor(graph.Float32, append([]int{b}, r.shape...))
	copy(x.F, rows[:k*r.dim])
	for i := k; i < b; i++ {
		copy(x.F[i*r.dim:(i+1)*r.dim], rows[(k-1)*r.dim:k*r.dim])
	}
	return x
}

func (r *runner) checkLogits(l *graph.Tensor, b int) error {
	if l == nil || len(l.Shape) != 2 || l.Shape[0] != b || l.Shape[1] != r.classes || len(l.F) != b*r.classes {
		return fmt.Errorf("model returned logits %v for a batch of %d, want [%d, %d]", shapeOf(l), b, b, r.classes)
	}
	return nil
}

// logits returns the logits [k*classes] of k flat images.
func (r *runner) logits(rows []float32, k int) ([]float32, error) {
	x := r.pad(rows, k)
	l, err := r.m.Logits(x)
	if err != nil {
		return nil, err
	}
	if err := r.checkLogits(l, x.Shape[0]); err != nil {
		return nil, err
	}
	return l.F[:k*r.classes], nil
}

// grad returns the logits, the losses and dL/dx [k*dim] of k flat images;
// padding rows get a zero seed.
func (r *runner) grad(rows []float32, k int, rule loss.Rule) (logits []float32, losses []float64, g []float32, err error) {
	x := r.pad(rows, k)
	b := x.Shape[0]
	var seedErr error
	l, gx, err := r.m.InputGrad(x, func(l *graph.Tensor) *graph.Tensor {
		s := graph.NewTensor(graph.Float32, l.Shape)
		if seedErr = r.checkLogits(l, b); seedErr != nil {
			return s
		}
		var sk *graph.Tensor
		losses, sk = loss.Batch(graph.F32([]int{k, r.classes}, l.F[:k*r.classes]), 1, rule)
		copy(s.F, sk.F)
		return s
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if seedErr != nil {
		return nil, nil, nil, seedErr
	}
	if err := r.checkLogits(l, b); err != nil {
		return nil, nil, nil, err
	}
	if gx == nil || len(gx.F) != b*r.dim {
		return nil, nil, nil, fmt.Errorf("model returned an input gradient %v for input %v", shapeOf(gx), x.Shape)
	}
	return l.F[:k*r.classes], losses, gx.F[:k*r.dim], nil
}

func shapeOf(t *graph.Tensor) any {
	if t == nil {
		return "nil"
	}
	return t.Shape
}

// row64 converts one row of logits to float64.
func row64(l []float32, i, k int, z []float64) []float64 {
	for j, v := range l[i*k : (i+1)*k] {
		z[j] = float64(v)
	}
	return z
}
