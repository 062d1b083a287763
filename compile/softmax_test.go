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

// expf, used by the softmax kernel off the last axis, is e^x to within 4e-7
// relative over the range where e^x is a normal float32.
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
