package attack

import (
	"fmt"
	"math"
	"slices"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// FAB is the targeted Fast Adaptive Boundary attack (Croce & Hein 2020,
// "Minimally distorted adversarial examples with a fast adaptive boundary
// attack") in the L-infinity norm, as AutoAttack's fab-t runs it: for each of
// Targets target classes t (the 2nd, 3rd, ... highest clean logits), on the
// samples still robust, Iters iterations from x1 = x0 = x (no random start):
//
//	f(x) = z_t(x) - z_y(x), linearized at x1: the hyperplane
//	    {v : grad f(x1) . v = grad f(x1) . x1 - f(x1)}
//	d1, d2 = the smallest L-infinity steps from x1 and from x0 onto that
//	    hyperplane within the box [0, 1] (the whole room to the box's corner
//	    when the box does not reach it)
//	a = min(max(|d1| / (|d1| + |d2|), 0), AlphaMax)     (|.| the max norm, at least 1e-8)
//	x1 = clip_[0,1]((1 - a) (x1 + Eta d1) + a (x0 + Eta d2))
//	if x1 is misclassified: remember it when |x1 - x0| is the smallest so
//	    far, then step back: x1 = x0 + Beta (x1 - x0)
//
// A sample is fooled when a misclassified iterate lies within eps of x. FAB
// minimizes the norm; here a sample stops as soon as it has one within eps
// (AutoAttack goes on shrinking it, which cannot change whether the sample
// is fooled). A sample not fooled returns x itself.
type FAB struct {
	// Targets is the number of target classes (AutoAttack: 9).
	Targets int
	// Iters per target (AutoAttack: 100).
	Iters int
	// AlphaMax bounds the step toward the original point (0.1).
	AlphaMax float64
	// Eta is the overshoot of the projection steps (1.05).
	Eta float64
	// Beta is the backward step after a success (0.9).
	Beta float64
}

// NewFABT is fab-t with AutoAttack's standard settings: 9 targets, 100
// iterations, alpha_max 0.1, eta 1.05, beta 0.9, one restart (no random start).
func NewFABT() FAB { return FAB{Targets: 9, Iters: 100, AlphaMax: 0.1, Eta: 1.05, Beta: 0.9} }

// Name is "fab-t".
func (FAB) Name() string { return "fab-t" }

// Run implements Attack. It draws no random numbers.
func (f FAB) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	if f.Targets < 1 || f.Iters < 1 || !(f.AlphaMax >= 0 && f.AlphaMax <= 1) || !(f.Eta >= 1) || !(f.Beta > 0 && f.Beta < 1) {
		return nil, fmt.Errorf("fab-t: bad settings %+v (targets and iterations >= 1, alpha_max in [0, 1], eta >= 1, beta in (0, 1))", f)
	}
	r := newRunner(m, x)
	n, c := x.Shape[0], r.classes
	cleanLogits, err := r.logits(x.F, n)
	if err != nil {
		return nil, err
	}
	cleanLogits = append([]float32(nil), cleanLogits...)
	clean := make([]bool, n)
	for i := range clean {
		clean[i] = loss.Argmax(cleanLogits[i*c:(i+1)*c]) == y[i]
	}
	adv := append([]float32(nil), x.F...)
	fooled := make([]bool, n)
	z := make([]float64, c)
	for t := 1; t <= min(f.Targets, c-1); t++ {
		var idx, target []int
		for i := 0; i < n; i++ {
			if clean[i] && !fooled[i] {
				idx = append(idx, i)
				target = append(target, loss.Order(row64(cleanLogits, i, c, z))[t])
			}
		}
		if len(idx) == 0 {
			break
		}
		if err := f.run(r, x.F, y, eps, idx, target, adv, fooled); err != nil {
			return nil, err
		}
	}
	return finish(r, x, y, adv, clean)
}

// run is one targeted FAB run on the samples idx with targets target.
func (f FAB) run(r *runner, x []float32, y []int, eps float64, idx, target []int, adv []float32, fooled []bool) error {
	d := r.dim
	n0 := len(idx)
	x0 := gather(nil, x, idx, d)
	x1 := append([]float32(nil), x0...)
	act := make([]int, n0)
	for p := range act {
		act[p] = p
	}
	obj := func(k int, z, g []float64) float64 {
		p := act[k]
		i, t := idx[p], target[p]
		clear(g)
		g[t], g[y[i]] = 1, -1
		return z[t] - z[y[i]]
	}
	pr := newLinfProjector(d)
	d1, d2 := make([]float64, d), make([]float64, d)
	w := make([]float64, d)
	var batch []float32
	for it := 0; it < f.Iters && len(act) > 0; it++ {
		batch = gather(batch, x1, act, d)
		_, fv, g, err := r.grad(batch, len(act), obj)
		if err != nil {
			return err
		}
		for k, p := range act {
			a1, a0 := x1[p*d:(p+1)*d], x0[p*d:(p+1)*d]
			// hyperplane w . v = b with w = grad f(x1), b = w . x1 - f(x1)
			b := -fv[k]
			for j := range w {
				w[j] = float64(g[k*d+j])
				b += w[j] * float64(a1[j])
			}
			n1 := pr.project(a1, w, b, d1)
			n2 := pr.project(a0, w, b, d2)
			n1, n2 = max(n1, 1e-8), max(n2, 1e-8)
			alpha := min(max(n1/(n1+n2), 0), f.AlphaMax)
			for j := range a1 {
				v := (float64(a1[j])+f.Eta*d1[j])*(1-alpha) + (float64(a0[j])+f.Eta*d2[j])*alpha
				a1[j] = float32(min(max(v, 0), 1))
			}
		}
		batch = gather(batch, x1, act, d)
		right, err := predictions(r, batch, len(act), pick(y, idx, act))
		if err != nil {
			return err
		}
		keep := act[:0:0]
		for k, p := range act {
			a1, a0 := x1[p*d:(p+1)*d], x0[p*d:(p+1)*d]
			if !right[k] {
				dist := 0.0
				for j := range a1 {
					dist = max(dist, math.Abs(float64(a1[j])-float64(a0[j])))
				}
				if dist <= eps {
					i := idx[p]
					fooled[i] = true
					copy(adv[i*d:(i+1)*d], a1)
					continue
				}
				for j := range a1 {
					a1[j] = float32(float64(a0[j]) + f.Beta*(float64(a1[j])-float64(a0[j])))
				}
			}
			keep = append(keep, p)
		}
		act = keep
	}
	return nil
}

// pick returns y[idx[p]] for p in act.
func pick(y, idx, act []int) []int {
	out := make([]int, len(act))
	for k, p := range act {
		out[k] = y[idx[p]]
	}
	return out
}

// linfProjector finds the smallest L-infinity step onto a hyperplane within
// the box [0, 1], reusing its buffers.
type linfProjector struct {
	room []float64
	ord  []int
}

func newLinfProjector(d int) *linfProjector {
	return &linfProjector{room: make([]float64, d), ord: make([]int, d)}
}

// project writes into dst the step d with the smallest max norm such that
// w . (t + d) = b and t + d in [0, 1], and returns its max norm. When the box
// does not reach the hyperplane, d goes all the way to the box's corner on
// the hyperplane's side. Elements with w = 0 do not move.
//
// With c = w . t - b, moving element j by lambda toward the hyperplane
// (against the sign of c w_j), at most its room r_j to the box's edge,
// changes w . t by |w_j| min(lambda, r_j); the smallest lambda with
// sum_j |w_j| min(lambda, r_j) = |c| is found by walking the rooms in
// increasing order.
func (pr *linfProjector) project(t []float32, w []float64, b float64, dst []float64) float64 {
	c := -b
	for j, v := range t {
		c += w[j] * float64(v)
	}
	clear(dst)
	if c == 0 || math.IsNaN(c) {
		return 0
	}
	// dir_j = -sign(c w_j): the direction element j moves in.
	ord := pr.ord[:0]
	total := 0.0 // sum |w_j| r_j: what the whole box can do
	for j, v := range t {
		if w[j] == 0 {
			continue
		}
		if (c > 0) == (w[j] > 0) { // moves down
			pr.room[j] = float64(v)
		} else {
			pr.room[j] = 1 - float64(v)
		}
		total += math.Abs(w[j]) * pr.room[j]
		ord = append(ord, j)
	}
	need := math.Abs(c)
	lambda := math.Inf(1)
	if total >= need {
		slices.SortFunc(ord, func(a, b int) int {
			switch {
			case pr.room[a] < pr.room[b]:
				return -1
			case pr.room[a] > pr.room[b]:
				return 1
			}
			return a - b
		})
		wRest := 0.0 // sum of |w_j| over the rooms not yet full
		for _, j := range ord {
			wRest += math.Abs(w[j])
		}
		done := 0.0 // what the full rooms contribute
		for _, j := range ord {
			// for lambda up to room_j: done + lambda * wRest
			if done+pr.room[j]*wRest >= need {
				lambda = (need - done) / wRest
				break
			}
			done += math.Abs(w[j]) * pr.room[j]
			wRest -= math.Abs(w[j])
		}
	}
	norm := 0.0
	for j := range t {
		if w[j] == 0 {
			continue
		}
		step := min(lambda, pr.room[j])
		if (c > 0) == (w[j] > 0) {
			dst[j] = -step
		} else {
			dst[j] = step
		}
		norm = max(norm, step)
	}
	return norm
}
