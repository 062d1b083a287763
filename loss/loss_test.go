package loss

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// checkGrad compares grad of f at z with central finite differences.
func checkGrad(t *testing.T, name string, z []float64, f func(z, g []float64) float64) {
	t.Helper()
	g := make([]float64, len(z))
	f0 := f(z, g)
	if v := f(z, nil); v != f0 {
		t.Errorf("%s: value %v without gradient, %v with", name, v, f0)
	}
	const h = 1e-6
	for j := range z {
		zp := append([]float64(nil), z...)
		zm := append([]float64(nil), z...)
		zp[j] += h
		zm[j] -= h
		fd := (f(zp, nil) - f(zm, nil)) / (2 * h)
		if math.Abs(fd-g[j]) > 1e-6*max(1, math.Abs(fd)) {
			t.Errorf("%s: dL/dz[%d] = %v, finite differences %v", name, j, g[j], fd)
		}
	}
}

func randRow(rng *rand.Rand, k int) []float64 {
	z := make([]float64, k)
	for j := range z {
		z[j] = 3 * rng.NormFloat64()
	}
	return z
}

func TestRowGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 50; trial++ {
		k := 4 + trial%7
		z, other := randRow(rng, k), randRow(rng, k)
		y := rng.IntN(k)
		tg := (y + 1 + rng.IntN(k-1)) % k
		p := make([]float64, k)
		Softmax(randRow(rng, k), p)
		checkGrad(t, "CrossEntropy", z, func(z, g []float64) float64 { return CrossEntropy(z, y, g) })
		checkGrad(t, "Margin", z, func(z, g []float64) float64 { return Margin(z, y, g) })
		checkGrad(t, "DLR", z, func(z, g []float64) float64 { return DLR(z, y, g) })
		checkGrad(t, "DLRTargeted", z, func(z, g []float64) float64 { return DLRTargeted(z, y, tg, g) })
		checkGrad(t, "KL", z, func(z, g []float64) float64 { return KL(p, z, g) })
		checkGrad(t, "KLLogits/p", z, func(z, g []float64) float64 { return KLLogits(z, other, g, nil) })
		checkGrad(t, "KLLogits/q", z, func(z, g []float64) float64 { return KLLogits(other, z, nil, g) })
		scratch := make([]float64, k)
		checkGrad(t, "MART/clean", z, func(z, g []float64) float64 {
			if g == nil {
				g = make([]float64, k)
			}
			return MART(z, other, y, 6, g, scratch)
		})
		checkGrad(t, "MART/adv", z, func(z, g []float64) float64 {
			if g == nil {
				g = make([]float64, k)
			}
			return MART(other, z, y, 6, scratch, g)
		})
	}
}

func TestRowValues(t *testing.T) {
	z := []float64{2, 5, 1, -1, 3}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	lse := math.Log(math.Exp(2) + math.Exp(5) + math.Exp(1) + math.Exp(-1) + math.Exp(3))
	near("CrossEntropy", CrossEntropy(z, 0, nil), lse-2)
	near("Margin y=0", Margin(z, 0, nil), 5-2)
	near("Margin y=1", Margin(z, 1, nil), 3-5)
	// sorted: 5, 3, 2, 1, -1
	near("DLR y=1", DLR(z, 1, nil), -(5-3)/(5-2+dlrEps))
	near("DLR y=2", DLR(z, 2, nil), -(1-5)/(5-2+dlrEps))
	near("DLRTargeted", DLRTargeted(z, 1, 3, nil), -(5-(-1))/(5-(2+1)/2.0+dlrEps))
	p := make([]float64, 5)
	Softmax(z, p)
	near("KL(p||p)", KL(p, z, nil), 0)
	near("KLLogits(z||z)", KLLogits(z, z, nil, nil), 0)
	q := []float64{0, 1, 0, 0, 0}
	near("KL(onehot||p)", KL(q, z, nil), CrossEntropy(z, 1, nil))
	w := []float64{1, -2, 0.5, 4, 0}
	pw := make([]float64, 5)
	Softmax(w, pw)
	near("KLLogits = KL of the probabilities", KLLogits(w, z, nil, nil), KL(pw, z, nil))
	// MART written out: CE - log(1.0001 - max other p) + beta KL (1 - p_y)
	g1, g2 := make([]float64, 5), make([]float64, 5)
	pz := p
	want := CrossEntropy(z, 2, nil) - math.Log(1.0001-pz[1]) + 6*KL(pw, z, nil)*(1-pw[2])
	near("MART", MART(w, z, 2, 6, g1, g2), want)
	// large logits stay finite
	big := []float64{1000, -1000, 0, 999}
	if v := CrossEntropy(big, 1, nil); math.IsInf(v, 0) || math.IsNaN(v) || math.Abs(v-(2000+math.Log1p(math.Exp(-1)))) > 1e-9 {
		t.Errorf("CrossEntropy of large logits = %v, want 2000 + log(1 + 1/e)", v)
	}
}

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

// The batch means: their gradients against central differences of the
// float32 logits.
func TestMeanGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	y := []int{0, 3, 2, 4}
	zc, za := randLogits(r, 4, 5), randLogits(r, 4, 5)

	_, g := MeanCE(za, y)
	checkFD(t, "cross-entropy", za, g, func() float64 { l, _ := MeanCE(za, y); return l })

	_, gp, gq := MeanKL(zc, za)
	checkFD(t, "kl/p", zc, gp, func() float64 { l, _, _ := MeanKL(zc, za); return l })
	checkFD(t, "kl/q", za, gq, func() float64 { l, _, _ := MeanKL(zc, za); return l })

	_, gc, ga := MeanMART(zc, za, y, 6)
	checkFD(t, "mart/clean", zc, gc, func() float64 { l, _, _ := MeanMART(zc, za, y, 6); return l })
	checkFD(t, "mart/adv", za, ga, func() float64 { l, _, _ := MeanMART(zc, za, y, 6); return l })
}

// The batch forms are the per-row rules, averaged.
func TestMeanValues(t *testing.T) {
	z := graph.F32([]int{2, 3}, []float32{1, 2, 3, 0, -1, 4})
	ce, g := MeanCE(z, []int{0, 2})
	want := (-(1 - math.Log(math.Exp(1)+math.Exp(2)+math.Exp(3))) - (4 - math.Log(math.Exp(0)+math.Exp(-1)+math.Exp(4)))) / 2
	if math.Abs(ce-want) > 1e-12 {
		t.Fatalf("CE %g, want %g", ce, want)
	}
	row := make([]float64, 3)
	CrossEntropy([]float64{0, -1, 4}, 2, row)
	for j, v := range row {
		if g.F[3+j] != float32(v/2) {
			t.Fatalf("CE gradient [1, %d] = %g, want %g", j, g.F[3+j], v/2)
		}
	}
	kl, _, _ := MeanKL(z, z)
	if math.Abs(kl) > 1e-12 {
		t.Fatalf("KL(p||p) = %g", kl)
	}
}

func TestArgmax(t *testing.T) {
	for _, c := range []struct {
		z    []float32
		want int
	}{{[]float32{1, 3, 2}, 1}, {[]float32{2, 2, 1}, 0}, {[]float32{-1}, 0}} {
		if got := Argmax(c.z); got != c.want {
			t.Errorf("Argmax(%v) = %d, want %d", c.z, got, c.want)
		}
	}
}
