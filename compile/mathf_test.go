package compile

import (
	"math"
	"testing"
)

func sweep(lo, hi float64, n int, f func(x float32)) {
	for i := 0; i <= n; i++ {
		f(float32(lo + (hi-lo)*float64(i)/float64(n)))
	}
}

func TestExpf(t *testing.T) {
	sweep(-87, 88, 200000, func(x float32) {
		want := math.Exp(float64(x))
		if got := float64(expf(x)); math.Abs(got-want) > 4e-7*want {
			t.Fatalf("expf(%g) = %g, want %g", x, got, want)
		}
	})
	if expf(100) != float32(math.Inf(1)) || expf(-100) != 0 || expf(0) != 1 {
		t.Fatal("expf edge cases")
	}
	if nan := float32(math.NaN()); expf(nan) == expf(nan) {
		t.Fatal("expf(NaN) is not NaN")
	}
}

func TestErfAndGelu(t *testing.T) {
	sweep(-12, 12, 200000, func(x float32) {
		xd := float64(x)
		if d := math.Abs(float64(erff(x)) - math.Erf(xd)); d > 6e-7 { // A&S 7.1.26 (1.5e-7) plus float32 evaluation
			t.Fatalf("erff(%g) off by %g", x, d)
		}
		if d := math.Abs(float64(geluF(x)) - gelu(xd, false)); d > 6e-7*math.Max(1, math.Abs(xd)) {
			t.Fatalf("geluF(%g) off by %g", x, d)
		}
		if d := math.Abs(float64(geluGradF(x)) - geluGrad(xd, false)); d > 1e-6*math.Max(1, math.Abs(xd)) {
			t.Fatalf("geluGradF(%g) off by %g", x, d)
		}
	})
}
