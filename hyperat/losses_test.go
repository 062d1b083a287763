package hyperat

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

func randLogits(r *rand.Rand, n, k int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, []int{n, k})
	for i := range t.F {
		t.F[i] = float32(2 * r.NormFloat64())
	}
	return t
}

// checkFD compares an analytic gradient with central differences of f, both
// logits perturbed in float32 but the loss evaluated in float64: with h = 1e-3
// and losses of order 1, the difference quotient is good to ~1e-5, so 1e-4
// absolute separates a wrong formula from noise.
func checkFD(t *testing.T, name string, z *graph.Tensor, grad *graph.Tensor, f func() float64) {
	t.Helper()
	const h = 1e-3
	for i := range z.F {
		o := z.F[i]
		z.F[i] = o + h
		fp := f()
		z.F[i] = o - h
		fm := f()
		z.F[i] = o
		fd := (fp - fm) / (float64(float32(o+h)) - float64(float32(o-h)))
		if math.Abs(fd-float64(grad.F[i])) > 1e-4 {
			t.Fatalf("%s: element %d: gradient %g, central difference %g", name, i, grad.F[i], fd)
		}
	}
}

func TestLossGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	y := []int{0, 3, 2, 4}
	zc, za := randLogits(r, 4, 5), randLogits(r, 4, 5)

	_, g := crossEntropy(za, y)
	checkFD(t, "cross-entropy", za, g, func() float64 { l, _ := crossEntropy(za, y); return l })

	_, gp, gq := klDiv(zc, za)
	checkFD(t, "kl/p", zc, gp, func() float64 { l, _, _ := klDiv(zc, za); return l })
	checkFD(t, "kl/q", za, gq, func() float64 { l, _, _ := klDiv(zc, za); return l })

	_, gc, ga := martLoss(zc, za, y, 6)
	checkFD(t, "mart/clean", zc, gc, func() float64 { l, _, _ := martLoss(zc, za, y, 6); return l })
	checkFD(t, "mart/adv", za, ga, func() float64 { l, _, _ := martLoss(zc, za, y, 6); return l })
}

// The values agree with the definitions written out directly.
func TestLossValues(t *testing.T) {
	z := graph.F32([]int{1, 3}, []float32{1, 2, 3})
	ce, _ := crossEntropy(z, []int{0})
	want := -(1 - math.Log(math.Exp(1)+math.Exp(2)+math.Exp(3)))
	if math.Abs(ce-want) > 1e-12 {
		t.Fatalf("CE %g, want %g", ce, want)
	}
	kl, _, _ := klDiv(z, z)
	if math.Abs(kl) > 1e-12 {
		t.Fatalf("KL(p||p) = %g", kl)
	}
}
