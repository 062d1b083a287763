package attack

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// APGD is Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial
// robustness with an ensemble of diverse parameter-free attacks") in the
// L-infinity ball, untargeted on the cross-entropy (apgd-ce) or targeted on
// the targeted DLR loss (apgd-t). One run on a sample, with P the projection
// onto the ball and [0, 1]:
//
//	x0 = P(x + eps * u / max|u|), u ~ U(-1, 1)^d;  eta = 2 eps;  x_prev = x0
//	for i = 0 .. Iters-1:
//	    z = P(x_i + eta * sign(grad L(x_i)))
//	    a = 0.75 (1 at i = 0)
//	    x_{i+1} = P(x_i + a (z - x_i) + (1 - a) (x_i - x_prev));  x_prev = x_i
//	    keep the iterate with the highest loss (and its gradient) as x_best
//	    at each checkpoint w_j: if the loss rose in at most rho = 75% of the
//	        steps since the last checkpoint, or (the step size was not halved
//	        at the last checkpoint and the best loss has not improved since),
//	        then eta /= 2 and x_{i+1} = x_best (with its gradient)
//
// The checkpoints are AutoAttack's: the first window is 22% of the
// iterations, each next one 3% of the iterations shorter, down to 6% (100
// iterations: checks after 22, 19, 16, 13, 10, 7, 6, 6, ... more steps).
// A sample is fooled as soon as an iterate is misclassified; that iterate is
// its example and the sample stops there (AutoAttack keeps iterating it,
// which cannot make it robust again). A sample never fooled returns its
// highest-loss point.
//
// apgd-t runs once for each of Targets target classes t, the classes with
// the 2nd, 3rd, ... highest clean logits, each run only on the samples still
// robust, maximizing -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2 + 1e-12).
type APGD struct {
	// Targeted selects apgd-t; otherwise apgd-ce.
	Targeted bool
	// Iters per run (AutoAttack: 100).
	Iters int
	// Restarts per loss (AutoAttack standard, L-infinity: 1 for apgd-ce, and
	// 1 per target for apgd-t); each restart runs only on samples still robust.
	Restarts int
	// Targets is the number of target classes of apgd-t (AutoAttack: 9);
	// fewer are used when the model has fewer other classes.
	Targets int
	// Rho is the oscillation threshold of the checkpoints (0.75).
	Rho float64
	// Momentum is the weight a of the new step in the update above, the
	// previous step getting 1 - a (AutoAttack: 0.75).
	Momentum float64
}

// NewAPGDCE is apgd-ce with AutoAttack's standard settings: 100 iterations,
// 1 restart, rho 0.75, momentum 0.75.
func NewAPGDCE() APGD { return APGD{Iters: 100, Restarts: 1, Rho: 0.75, Momentum: 0.75} }

// NewAPGDT is apgd-t with AutoAttack's standard settings: 9 target classes,
// 100 iterations and 1 restart each, rho 0.75, momentum 0.75.
func NewAPGDT() APGD {
	return APGD{Targeted: true, Iters: 100, Restarts: 1, Targets: 9, Rho: 0.75, Momentum: 0.75}
}

// Name is apgd-ce or apgd-t.
func (a APGD) Name() string {
	if a.Targeted {
		return "apgd-t"
	}
	return "apgd-ce"
}

// Run implements Attack.
func (a APGD) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	switch {
	case a.Iters < 1:
		return nil, fmt.Errorf("%s: iterations must be at least 1", a.Name())
	case a.Restarts < 1:
		return nil, fmt.Errorf("%s: restarts must be at least 1", a.Name())
	case a.Targeted && a.Targets < 1:
		return nil, fmt.Errorf("%s: target classes must be at least 1", a.Name())
	case a.Targeted && m.Classes() < 4:
		return nil, fmt.Errorf("%s: the targeted DLR loss needs at least 4 classes, the model has %d", a.Name(), m.Classes())
	case !(a.Rho > 0 && a.Rho <= 1) || !(a.Momentum > 0 && a.Momentum <= 1):
		return nil, fmt.Errorf("%s: rho and momentum must be in (0, 1], got %v and %v", a.Name(), a.Rho, a.Momentum)
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
	st := &apgdState{APGD: a, r: r, x: x.F, y: y, eps: eps, ball: newBall(x.F, eps), seeds: s,
		adv: append([]float32(nil), x.F...), fooled: make([]bool, n), bestLoss: make([]float64, n),
		rngs: make([]*rand.Rand, n)}
	for i := range st.bestLoss {
		st.bestLoss[i] = math.Inf(-1)
	}
	runs := 1
	if a.Targeted {
		runs = min(a.Targets, c-1)
	}
	for t := 1; t <= runs; t++ {
		var target []int
		if a.Targeted {
			target = make([]int, n)
			z := make([]float64, c)
			for i := range target {
				target[i] = loss.Order(row64(cleanLogits, i, c, z))[t]
			}
		}
		for range a.Restarts {
			var idx []int
			for i := 0; i < n; i++ {
				if clean[i] && !st.fooled[i] {
					idx = append(idx, i)
				}
			}
			if len(idx) == 0 {
				break
			}
			if err := st.run(idx, target); err != nil {
				return nil, err
			}
		}
	}
	return finish(r, x, y, st.adv, clean)
}

// apgdState carries the samples' results across runs (targets, restarts).
type apgdState struct {
	APGD
	r      *runner
	x      []float32
	y      []int
	eps    float64
	ball   ball
	seeds  Seeds
	adv    []float32 // the example of each sample so far
	fooled []bool
	// bestLoss is the highest loss a run reached on a sample not fooled; its
	// x_best becomes the sample's example when no run fools it.
	bestLoss []float64
	rngs     []*rand.Rand // each sample's stream, created at its first run
}

// checkpoints returns the iterations (0-based) after which the step size is
// checked: AutoAttack's p_0 = 0, p_1 = 0.22, window shrinking by 0.03 down
// to 0.06 of the iterations, in integers as AutoAttack computes them.
func checkpoints(iters int) []int {
	k := max(int(0.22*float64(iters)), 1)
	kMin := max(int(0.06*float64(iters)), 1)
	dec := max(int(0.03*float64(iters)), 1)
	var cp []int
	for i := k - 1; i < iters; i += k {
		cp = append(cp, i)
		k = max(k-dec, kMin)
	}
	return cp
}

// apgdRun is one APGD run on the samples idx (all robust so far); its
// per-sample state is indexed by position p in the run (0..len(idx)-1).
type apgdRun struct {
	st       *apgdState
	idx      []int
	target   []int
	d        int
	cur      []float32   // x_i
	prev     []float32   // x_{i-1}
	best     []float32   // x_best
	grad     []float32   // gradient at x_i
	gBest    []float32   // gradient at x_best
	hist     [][]float64 // hist[p][i]: the loss after step i (AutoAttack's loss_steps), 0 before
	lossBest []float64   // loss at x_best
	lossLast []float64   // best loss at the last checkpoint
	reduced  []bool      // the step was halved at the last checkpoint
	eta      []float32
	act      []int // positions still active (not fooled)
	batch    []float32
}

// run is one APGD run on the samples idx (all robust so far).
func (st *apgdState) run(idx []int, target []int) error {
	d, n0 := st.r.dim, len(idx)
	ru := &apgdRun{st: st, idx: idx, target: target, d: d,
		cur: make([]float32, n0*d), prev: make([]float32, n0*d), best: make([]float32, n0*d),
		grad: make([]float32, n0*d), gBest: make([]float32, n0*d), hist: make([][]float64, n0),
		lossBest: make([]float64, n0), lossLast: make([]float64, n0), reduced: make([]bool, n0),
		eta: make([]float32, n0), act: make([]int, n0)}
	for p := range ru.act {
		ru.act[p] = p
	}
	ru.start()
	losses, err := ru.evaluate()
	if err != nil {
		return err
	}
	for _, p := range ru.act {
		ru.lossBest[p] = losses[p]
		ru.lossLast[p] = losses[p]
		ru.keepBest(p)
	}
	cps := checkpoints(st.Iters)
	next, window := 0, max(int(0.22*float64(st.Iters)), 1)
	z := make([]float32, d)
	for it := 0; it < st.Iters && len(ru.act) > 0; it++ {
		ru.step(it, z)
		losses, err := ru.evaluate()
		if err != nil {
			return err
		}
		for _, p := range ru.act {
			ru.hist[p][it] = losses[p]
			if losses[p] > ru.lossBest[p] {
				ru.lossBest[p] = losses[p]
				ru.keepBest(p)
			}
		}
		if next < len(cps) && it == cps[next] {
			ru.checkpoint(it, window)
			next++
			if next < len(cps) {
				window = cps[next] - cps[next-1]
			}
		}
	}
	// samples not fooled: keep the highest-loss point over all runs
	for _, p := range ru.act {
		i := idx[p]
		if ru.lossBest[p] > st.bestLoss[i] {
			st.bestLoss[i] = ru.lossBest[p]
			copy(st.adv[i*d:(i+1)*d], ru.best[p*d:(p+1)*d])
		}
	}
	return nil
}

// start sets x_0 = P(x + eps u / max|u|), u ~ U(-1, 1), from each sample's
// stream, and the first step size 2 eps.
func (ru *apgdRun) start() {
	st, d, eps := ru.st, ru.d, ru.st.eps
	u := make([]float64, d)
	for p, i := range ru.idx {
		if st.rngs[i] == nil {
			st.rngs[i] = st.seeds.rng(st.Name(), i)
		}
		rng := st.rngs[i]
		row := ru.cur[p*d : (p+1)*d]
		copy(row, st.x[i*d:(i+1)*d])
		mx := 0.0
		for j := range u {
			u[j] = 2*rng.Float64() - 1
			mx = max(mx, math.Abs(u[j]))
		}
		for j := range row {
			row[j] += float32(eps * u[j] / (mx + 1e-12))
		}
		st.ball.project(row, i*d)
		ru.hist[p] = make([]float64, st.Iters)
		ru.eta[p] = float32(2 * eps)
		ru.reduced[p] = true
	}
	copy(ru.prev, ru.cur)
}

// rule is the run's loss of the k-th active sample.
func (ru *apgdRun) rule(k int, z, g []float64) float64 {
	i := ru.idx[ru.act[k]]
	if ru.st.Targeted {
		return loss.DLRTargeted(z, ru.st.y[i], ru.target[i], g)
	}
	return loss.CrossEntropy(z, ru.st.y[i], g)
}

// evaluate computes loss and gradient at cur for the active samples, marks
// those misclassified as fooled and drops them; it returns the losses of
// the survivors, by position.
func (ru *apgdRun) evaluate() ([]float64, error) {
	st, d := ru.st, ru.d
	ru.batch = gather(ru.batch, ru.cur, ru.act, d)
	logits, losses, g, err := st.r.grad(ru.batch, len(ru.act), ru.rule)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(ru.idx))
	keep := ru.act[:0:0]
	c := st.r.classes
	for k, p := range ru.act {
		i := ru.idx[p]
		copy(ru.grad[p*d:(p+1)*d], g[k*d:(k+1)*d])
		out[p] = losses[k]
		if loss.Argmax(logits[k*c:(k+1)*c]) != st.y[i] {
			st.fooled[i] = true
			copy(st.adv[i*d:(i+1)*d], ru.cur[p*d:(p+1)*d])
			continue
		}
		keep = append(keep, p)
	}
	ru.act = keep
	return out, nil
}

// step moves every active sample: z = P(x_i + eta sign(g)), then the
// momentum update x_{i+1} = P(x_i + a (z - x_i) + (1 - a) (x_i - x_prev)).
func (ru *apgdRun) step(it int, z []float32) {
	d := ru.d
	w := float32(1)
	if it > 0 {
		w = float32(ru.st.Momentum)
	}
	for _, p := range ru.act {
		i := ru.idx[p]
		xi, xp, g := ru.cur[p*d:(p+1)*d], ru.prev[p*d:(p+1)*d], ru.grad[p*d:(p+1)*d]
		for j := range z {
			z[j] = xi[j] + ru.eta[p]*sign(g[j])
		}
		ru.st.ball.project(z, i*d)
		for j := range z {
			old := xi[j]
			z[j] = old + w*(z[j]-old) + (1-w)*(old-xp[j])
			xp[j] = old
		}
		ru.st.ball.project(z, i*d)
		copy(xi, z)
	}
}

// keepBest records x_i and its gradient as position p's x_best.
func (ru *apgdRun) keepBest(p int) {
	d := ru.d
	copy(ru.best[p*d:(p+1)*d], ru.cur[p*d:(p+1)*d])
	copy(ru.gBest[p*d:(p+1)*d], ru.grad[p*d:(p+1)*d])
}

// checkpoint halves the step of the samples whose loss rose in at most rho
// of the window's steps, or whose step was not halved last time and whose
// best loss did not improve, and sends them back to x_best. The rises are
// counted as AutoAttack's check_oscillation counts them: step i's loss
// against step i-1's, for the window's last steps; at the first checkpoint
// step 0's loss is compared with hist[-1], which wraps around to the last
// entry, still 0 (so a positive loss, such as the cross-entropy, counts as a
// rise there, and the targeted DLR loss of a sample not yet fooled, which is
// negative, does not).
func (ru *apgdRun) checkpoint(it, window int) {
	d, n := ru.d, ru.st.Iters
	for _, p := range ru.act {
		ups := 0
		h := ru.hist[p]
		for j := it; j > it-window; j-- {
			if h[j] > h[(j-1+n)%n] {
				ups++
			}
		}
		halve := float64(ups) <= float64(window)*ru.st.Rho ||
			(!ru.reduced[p] && ru.lossLast[p] >= ru.lossBest[p])
		ru.reduced[p] = halve
		ru.lossLast[p] = ru.lossBest[p]
		if halve {
			ru.eta[p] /= 2
			copy(ru.cur[p*d:(p+1)*d], ru.best[p*d:(p+1)*d])
			copy(ru.grad[p*d:(p+1)*d], ru.gBest[p*d:(p+1)*d])
		}
	}
}
