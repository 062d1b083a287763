package hyperat

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

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

// AdamW's update gives the same bits on any number of cores, on tensors
// above and below the size it splits at.
func TestAdamWSameBitsOnAnyCores(t *testing.T) {
	run := func(procs int) [][]float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		r := rand.New(rand.NewPCG(3, 4))
		var ps, gs []*graph.Tensor
		for _, n := range []int{7, adamGrain - 1, 3*adamGrain + 5} {
			p, g := graph.NewTensor(graph.Float32, []int{n}), graph.NewTensor(graph.Float32, []int{n})
			for j := range p.F {
				p.F[j], g.F[j] = float32(r.NormFloat64()), float32(r.NormFloat64())
			}
			ps, gs = append(ps, p), append(gs, g)
		}
		o := NewAdamW(ps, 0.01)
		for range 3 {
			o.Update(ps, gs, 1e-3)
		}
		var out [][]float32
		for i, p := range ps {
			out = append(out, p.F, o.M[i].F, o.V[i].F)
		}
		return out
	}
	one := run(1)
	for _, procs := range []int{2, 3, 8} {
		for i, x := range run(procs) {
			for j := range x {
				if math.Float32bits(x[j]) != math.Float32bits(one[i][j]) {
					t.Fatalf("GOMAXPROCS %d: tensor %d [%d] = %v, on one core %v", procs, i, j, x[j], one[i][j])
				}
			}
		}
	}
}
