package attack

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// Square is the Square Attack (Andriushchenko et al. 2020), a score-based
// random search in the L-infinity ball, as AutoAttack's standard suite runs
// it (margin loss, one restart, the schedule of p not rescaled):
//
//	x_best = P(x + eps * s), s = a random sign per channel and image column
//	L(v) = z_y(v) - max_{k != y} z_k(v)   (minimized; <= 0 means fooled)
//	for i = 0 .. Queries-1, while L(x_best) > 0:
//	    p = PInit halved at iterations 10, 50, 200, 500, 1000, 2000, 4000,
//	        6000, 8000 (the Square Attack schedule; 5000 queries stop before
//	        the last two)
//	    side = max(round(sqrt(p * H * W)), 1), at most min(H, W)
//	    pick a side x side window at a random position, and one random sign
//	        per channel; x_new = P(x_best + 2 eps * sign on the window)
//	    if L(x_new) < L(x_best): x_best = x_new
//
// P is the projection onto the ball and [0, 1]; each iteration costs one
// forward pass on the samples not yet fooled. A sample fooled returns the
// first x_best with L <= 0; one never fooled returns its x_best.
type Square struct {
	// Queries is the number of iterations (AutoAttack standard: 5000).
	Queries int
	// PInit is the initial fraction of the image a window covers (0.8).
	PInit float64
}

// NewSquare is square with AutoAttack's standard settings: 5000 queries,
// p_init 0.8.
func NewSquare() Square { return Square{Queries: 5000, PInit: 0.8} }

// Name is "square".
func (Square) Name() string { return "square" }

// squareP is the fraction of the image a window covers at iteration it
// (AutoAttack's p_selection with its schedule not rescaled).
func squareP(pInit float64, it int) float64 {
	switch {
	case it <= 10:
		return pInit
	case it <= 50:
		return pInit / 2
	case it <= 200:
		return pInit / 4
	case it <= 500:
		return pInit / 8
	case it <= 1000:
		return pInit / 16
	case it <= 2000:
		return pInit / 32
	case it <= 4000:
		return pInit / 64
	case it <= 6000:
		return pInit / 128
	case it <= 8000:
		return pInit / 256
	}
	return pInit / 512
}

// Run implements Attack.
func (sq Square) Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return nil, err
	}
	if sq.Queries < 0 || !(sq.PInit > 0 && sq.PInit <= 1) {
		return nil, fmt.Errorf("square: queries must be >= 0 and p_init in (0, 1], got %d and %v", sq.Queries, sq.PInit)
	}
	r := newRunner(m, x)
	n, d := x.Shape[0], r.dim
	clean, err := predictions(r, x.F, n, y)
	if err != nil {
		return nil, err
	}
	sr := &squareRun{Square: sq, r: r, shape: x.Shape[1:], y: y, eps: eps, ball: newBall(x.F, eps),
		best: append([]float32(nil), x.F...), lossBest: make([]float64, n), rngs: make([]*rand.Rand, n),
		z: make([]float64, r.classes)}
	for i := 0; i < n; i++ {
		if clean[i] {
			sr.act = append(sr.act, i)
			sr.rngs[i] = s.rng(sq.Name(), i)
			sr.stripes(i, sr.best[i*d:(i+1)*d])
		}
	}
	if len(sr.act) == 0 {
		return finish(r, x, y, sr.best, clean)
	}
	l, err := r.logits(gather(nil, sr.best, sr.act, d), len(sr.act))
	if err != nil {
		return nil, err
	}
	keep := sr.act[:0:0]
	for k, i := range sr.act {
		sr.lossBest[i] = sr.margin(l, k, i)
		if sr.lossBest[i] > 0 {
			keep = append(keep, i)
		}
	}
	sr.act = keep
	cand := make([]float32, 0, len(sr.act)*d)
	for it := 0; it < sq.Queries && len(sr.act) > 0; it++ {
		cand = gather(cand, sr.best, sr.act, d)
		side := sr.side(it)
		for k, i := range sr.act {
			sr.window(i, cand[k*d:(k+1)*d], side)
		}
		l, err := r.logits(cand, len(sr.act))
		if err != nil {
			return nil, err
		}
		keep := sr.act[:0:0]
		for k, i := range sr.act {
			if v := sr.margin(l, k, i); v < sr.lossBest[i] {
				sr.lossBest[i] = v
				copy(sr.best[i*d:(i+1)*d], cand[k*d:(k+1)*d])
			}
			if sr.lossBest[i] > 0 {
				keep = append(keep, i)
			}
		}
		sr.act = keep
	}
	return finish(r, x, y, sr.best, clean)
}

// squareRun is the state of one Square run.
type squareRun struct {
	Square
	r        *runner
	shape    []int // [C, H, W]
	y        []int
	eps      float64
	ball     ball
	best     []float32 // x_best of every sample
	lossBest []float64 // L(x_best)
	rngs     []*rand.Rand
	act      []int // samples not fooled yet
	z        []float64
}

// margin is L = z_y - max_{k != y} z_k of row k of the logits l, sample i.
func (sr *squareRun) margin(l []float32, k, i int) float64 {
	return -loss.Margin(row64(l, k, sr.r.classes, sr.z), sr.y[i], nil)
}

// stripes sets sample i's start P(x + eps s): one random sign per channel
// and image column.
func (sr *squareRun) stripes(i int, row []float32) {
	ch, h, w := sr.shape[0], sr.shape[1], sr.shape[2]
	rng := sr.rngs[i]
	for k := 0; k < ch; k++ {
		for col := 0; col < w; col++ {
			v := float32(sr.eps)
			if rng.IntN(2) == 0 {
				v = -v
			}
			for rw := 0; rw < h; rw++ {
				row[(k*h+rw)*w+col] += v
			}
		}
	}
	sr.ball.project(row, i*sr.r.dim)
}

// side is the window's side at iteration it: round(sqrt(p H W)), at least
// 1 and at most min(H, W).
func (sr *squareRun) side(it int) int {
	h, w := sr.shape[1], sr.shape[2]
	p := squareP(sr.PInit, it)
	side := max(int(math.RoundToEven(math.Sqrt(p*float64(h*w)))), 1)
	return min(side, h, w)
}

// window adds 2 eps times one random sign per channel on a side x side
// window at a random position of sample i's candidate row, and projects it.
func (sr *squareRun) window(i int, row []float32, side int) {
	ch, h, w := sr.shape[0], sr.shape[1], sr.shape[2]
	rng := sr.rngs[i]
	vh, vw := 0, 0
	if h > side {
		vh = rng.IntN(h - side)
	}
	if w > side {
		vw = rng.IntN(w - side)
	}
	for ci := 0; ci < ch; ci++ {
		v := float32(2 * sr.eps)
		if rng.IntN(2) == 0 {
			v = -v
		}
		for rw := vh; rw < vh+side; rw++ {
			o := (ci*h+rw)*w + vw
			for j := o; j < o+side; j++ {
				row[j] += v
			}
		}
	}
	sr.ball.project(row, i*sr.r.dim)
}
