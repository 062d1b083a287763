package attack

import (
	"math"
	"math/rand/v2"
	"testing"
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

func randLogits(rng *rand.Rand, k int) []float64 {
	z := make([]float64, k)
	for j := range z {
		z[j] = 3 * rng.NormFloat64()
	}
	return z
}

func TestLossGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 50; trial++ {
		k := 4 + trial%7
		z := randLogits(rng, k)
		y := rng.IntN(k)
		tg := (y + 1 + rng.IntN(k-1)) % k
		p := make([]float64, k)
		Softmax(randLogits(rng, k), p)
		checkGrad(t, "CrossEntropy", z, func(z, g []float64) float64 { return CrossEntropy(z, y, g) })
		checkGrad(t, "Margin", z, func(z, g []float64) float64 { return Margin(z, y, g) })
		checkGrad(t, "DLR", z, func(z, g []float64) float64 { return DLR(z, y, g) })
		checkGrad(t, "DLRTargeted", z, func(z, g []float64) float64 { return DLRTargeted(z, y, tg, g) })
		checkGrad(t, "KL", z, func(z, g []float64) float64 { return KL(p, z, g) })
	}
}

func TestLossValues(t *testing.T) {
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
	q := []float64{0, 1, 0, 0, 0}
	near("KL(onehot||p)", KL(q, z, nil), CrossEntropy(z, 1, nil))
	// large logits stay finite
	big := []float64{1000, -1000, 0, 999}
	if v := CrossEntropy(big, 1, nil); math.IsInf(v, 0) || math.IsNaN(v) || math.Abs(v-(2000+math.Log1p(math.Exp(-1)))) > 1e-9 {
		t.Errorf("CrossEntropy of large logits = %v, want 2000 + log(1 + 1/e)", v)
	}
}

// TestLossGrad checks LossGrad on a linear model, where dL/dx = W^T dL/dz.
func TestLossGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	l := newLinear(rng, 5, []int{1, 2, 3})
	x, y := linearCase(rng, l, 3)
	logits, loss, grad, err := LossGrad(l, x, func(i int, z, g []float64) float64 { return CrossEntropy(z, y[i], g) })
	if err != nil {
		t.Fatal(err)
	}
	z, g := make([]float64, 5), make([]float64, 5)
	for i := range y {
		want := CrossEntropy(row64(logits.F, i, 5, z), y[i], g)
		if loss[i] != want {
			t.Errorf("sample %d: loss %v, want %v", i, loss[i], want)
		}
		for j := 0; j < 6; j++ {
			v := 0.0
			for k := range g {
				v += float64(float32(g[k])) * l.w[k][j]
			}
			if math.Abs(float64(grad.F[i*6+j])-v) > 1e-5 {
				t.Errorf("sample %d: dL/dx[%d] = %v, want %v", i, j, grad.F[i*6+j], v)
			}
		}
	}
}
