package hyperat

import "testing"

// The training attack must stay inside the ball the user asked for, whatever
// the run's length: the radius grows, never exceeds eps, and reaches it by the
// end of the warm-up.
func TestEpsWarmupStaysInBall(t *testing.T) {
	for _, eps := range []float64{8.0 / 255, 0.1, 0.3} {
		for _, warm := range []float64{0, 0.1, 0.3, 0.5, 1} {
			for total := 1; total <= 50; total++ {
				prev := 0.0
				for it := 0; it < total; it++ {
					e := epsAt(eps, it, total, warm)
					if e <= 0 || e > eps {
						t.Fatalf("eps %v, warm-up %v, %d iterations: iteration %d has radius %v, outside (0, %v]", eps, warm, total, it, e, eps)
					}
					if e < prev {
						t.Fatalf("eps %v, warm-up %v, %d iterations: radius falls from %v to %v at iteration %d", eps, warm, total, prev, e, it)
					}
					if float64(it+1) >= warm*float64(total) && e != eps {
						t.Fatalf("eps %v, warm-up %v, %d iterations: iteration %d is past the warm-up but has radius %v", eps, warm, total, it, e)
					}
					prev = e
				}
			}
		}
	}
}

// oneCycle's warm-up never exceeds the peak rate either.
func TestOneCycleNeverAbovePeak(t *testing.T) {
	for total := 1; total <= 50; total++ {
		for it := 0; it < total; it++ {
			if lr := oneCycle(1e-3, it, total, 0.1); lr < 0 || lr > 1e-3 {
				t.Fatalf("%d iterations: iteration %d has learning rate %v", total, it, lr)
			}
		}
	}
}
