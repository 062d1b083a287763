package loss

import "github.com/hyperat/hyperat/graph"

// Rule is a per-sample loss for Batch: it returns the loss of row i of a
// batch given its logits z, and writes dL/dz into grad (never nil here).
type Rule func(i int, z, grad []float64) float64

// PairRule is a per-sample loss of two rows of logits for BatchPair (the
// clean and the adversarial logits of sample i), writing dL/dzc into gc and
// dL/dza into ga.
type PairRule func(i int, zc, za, gc, ga []float64) float64

// Batch applies rule to every row of the logits z [N, K]. It returns each
// row's loss and the cotangent: each row's dL/dz divided by div (1 for the
// summed loss, N for the batch mean), as float32 of z's shape.
func Batch(z *graph.Tensor, div float64, rule Rule) ([]float64, *graph.Tensor) {
	n, k := z.Shape[0], z.Shape[1]
	losses := make([]float64, n)
	g := graph.NewTensor(graph.Float32, z.Shape)
	zi, gi := make([]float64, k), make([]float64, k)
	for i := range n {
		row64(z.F[i*k:(i+1)*k], zi)
		losses[i] = rule(i, zi, gi)
		for j, d := range gi {
			g.F[i*k+j] = float32(d / div)
		}
	}
	return losses, g
}

// BatchPair applies rule to the rows of the clean logits zc and the
// adversarial logits za (both [N, K]), returning each row's loss and the
// two cotangents, divided by div as in Batch.
func BatchPair(zc, za *graph.Tensor, div float64, rule PairRule) ([]float64, *graph.Tensor, *graph.Tensor) {
	n, k := za.Shape[0], za.Shape[1]
	losses := make([]float64, n)
	gc := graph.NewTensor(graph.Float32, zc.Shape)
	ga := graph.NewTensor(graph.Float32, za.Shape)
	ci, ai := make([]float64, k), make([]float64, k)
	gci, gai := make([]float64, k), make([]float64, k)
	for i := range n {
		row64(zc.F[i*k:(i+1)*k], ci)
		row64(za.F[i*k:(i+1)*k], ai)
		losses[i] = rule(i, ci, ai, gci, gai)
		for j := range k {
			gc.F[i*k+j] = float32(gci[j] / div)
			ga.F[i*k+j] = float32(gai[j] / div)
		}
	}
	return losses, gc, ga
}

// MeanCE is the batch mean of CrossEntropy over logits z [N, K] with labels
// y (PyTorch's F.cross_entropy), and its gradient.
func MeanCE(z *graph.Tensor, y []int) (float64, *graph.Tensor) {
	l, g := Batch(z, float64(len(y)), func(i int, z, g []float64) float64 { return CrossEntropy(z, y[i], g) })
	return mean(l), g
}

// MeanKL is the batch mean of KLLogits(p_i, q_i) (PyTorch's KLDivLoss with
// "batchmean"), and its gradients for p and q.
func MeanKL(p, q *graph.Tensor) (float64, *graph.Tensor, *graph.Tensor) {
	l, gp, gq := BatchPair(p, q, float64(p.Shape[0]), func(_ int, p, q, gp, gq []float64) float64 { return KLLogits(p, q, gp, gq) })
	return mean(l), gp, gq
}

// MeanMART is the batch mean of MART with weight beta, and its gradients for
// the clean logits zc and the adversarial logits za.
func MeanMART(zc, za *graph.Tensor, y []int, beta float64) (float64, *graph.Tensor, *graph.Tensor) {
	l, gc, ga := BatchPair(zc, za, float64(len(y)), func(i int, zc, za, gc, ga []float64) float64 {
		return MART(zc, za, y[i], beta, gc, ga)
	})
	return mean(l), gc, ga
}

// Argmax is the first index of the largest value: the class a row of
// logits predicts.
func Argmax(z []float32) int {
	b := 0
	for i, v := range z {
		if v > z[b] {
			b = i
		}
	}
	return b
}

func row64(z []float32, out []float64) {
	for j, v := range z {
		out[j] = float64(v)
	}
}

func mean(l []float64) float64 {
	s := 0.0
	for _, v := range l {
		s += v
	}
	return s / float64(len(l))
}
