package vmath

import (
	"math"
	"os"
	"sync"
	"testing"
)

// TestExhaustive runs every variant on every float32 and checks them against
// the plain-Go twin bit for bit and against float64 math within the bounds of
// the accuracy tests. It takes minutes: set VMATH_EXHAUSTIVE=1 to run it.
func TestExhaustive(t *testing.T) {
	if os.Getenv("VMATH_EXHAUSTIVE") != "1" {
		t.Skip("set VMATH_EXHAUSTIVE=1 to run")
	}
	vs := supported()
	const chunk = 1 << 16
	type worst struct{ exp, erf, gelu, grad float64 }
	var (
		mu  sync.Mutex
		all worst
		wg  sync.WaitGroup
	)
	work := make(chan uint64, 8)
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := make([]float32, chunk)
			ones := make([]float32, chunk)
			for i := range ones {
				ones[i] = 1
			}
			want := make([][]float32, 3)
			got := make([]float32, chunk)
			for i := range want {
				want[i] = make([]float32, chunk)
			}
			var w worst
			for start := range work {
				for i := range x {
					x[i] = math.Float32frombits(uint32(start) + uint32(i))
				}
				expGo(want[0], x)
				geluGo(want[1], x)
				geluGradGo(want[2], x, ones)
				for _, v := range vs[:len(vs)-1] {
					for k, run := range []func(){
						func() { v.exp(got, x) },
						func() { v.gelu(got, x) },
						func() { v.geluGrad(got, x, ones) },
					} {
						run()
						for i := range got {
							if !same(got[i], want[k][i]) {
								t.Errorf("%s kernel %d: x = %g (%#x): got %g, want %g", v.name, k, x[i], math.Float32bits(x[i]), got[i], want[k][i])
								return
							}
						}
					}
				}
				for i, xi := range x {
					xd := float64(xi)
					if xd != xd {
						continue
					}
					if xd >= float64(expMin) && xd <= 88.7228 {
						r := math.Exp(xd)
						w.exp = math.Max(w.exp, math.Abs(float64(want[0][i])-r)/r)
					}
					if xd >= 0 && xd <= 17 {
						r, p, n := erfcParts(min(xi, geluMaxAbs))
						h := scalef(r*p, n)
						w.erf = math.Max(w.erf, math.Abs(1-2*float64(h)-math.Erf(xd/math.Sqrt2)))
					}
					if math.Abs(xd) < 30 {
						s := math.Max(1, math.Abs(xd))
						w.gelu = math.Max(w.gelu, math.Abs(float64(want[1][i])-geluRef(xd))/s)
						w.grad = math.Max(w.grad, math.Abs(float64(want[2][i])-geluGradRef(xd))/s)
					}
				}
			}
			mu.Lock()
			all.exp = math.Max(all.exp, w.exp)
			all.erf = math.Max(all.erf, w.erf)
			all.gelu = math.Max(all.gelu, w.gelu)
			all.grad = math.Max(all.grad, w.grad)
			mu.Unlock()
		}()
	}
	for start := uint64(0); start < 1<<32; start += chunk {
		work <- start
	}
	close(work)
	wg.Wait()
	t.Logf("largest errors over all float32: exp %.3g relative, erf %.3g, gelu %.3g, gradient %.3g (times max(1, |x|))",
		all.exp, all.erf, all.gelu, all.grad)
	if all.exp > expTol || all.erf > erfTol || all.gelu > geluTol || all.grad > geluGradTol {
		t.Error("an accuracy bound is exceeded")
	}
}
