package attack

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
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
	n, d, c := x.Shape[0], r.dim, r.classes
	ch, h, w := x.Shape[1], x.Shape[2], x.Shape[3]
	clean, err := predictions(r, x.F, n, y)
	if err != nil {
		return nil, err
	}
	b := newBall(x.F, eps)
	best := append([]float32(nil), x.F...)
	var act []int
	rngs := make([]*rand.Rand, n)
	for i := 0; i < n; i++ {
		if !clean[i] {
			continue
		}
		act = append(act, i)
		rngs[i] = s.rng(sq.Name(), i)
		row := best[i*d : (i+1)*d]
		for k := 0; k < ch; k++ {
			for col := 0; col < w; col++ {
				v := float32(eps)
				if rngs[i].IntN(2) == 0 {
					v = -v
				}
				for rw := 0; rw < h; rw++ {
					row[(k*h+rw)*w+col] += v
				}
			}
		}
		b.project(row, i*d)
	}
	if len(act) == 0 {
		return finish(r, x, y, best, clean)
	}
	margin := func(l []float32, k, yi int, z []float64) float64 {
		row64(l, k, c, z)
		return z[yi] - z[maxOther(z, yi)]
	}
	z := make([]float64, c)
	lossBest := make([]float64, n)
	var batch []float32
	batch = gather(batch, best, act, d)
	l, err := r.logits(batch, len(act))
	if err != nil {
		return nil, err
	}
	keep := act[:0:0]
	for k, i := range act {
		lossBest[i] = margin(l, k, y[i], z)
		if lossBest[i] > 0 {
			keep = append(keep, i)
		}
	}
	act = keep
	cand := make([]float32, 0, len(act)*d)
	for it := 0; it < sq.Queries && len(act) > 0; it++ {
		p := squareP(sq.PInit, it)
		side := max(int(math.RoundToEven(math.Sqrt(p*float64(h*w)))), 1)
		side = min(side, h, w)
		cand = gather(cand, best, act, d)
		for k, i := range act {
			rng := rngs[i]
			vh, vw := 0, 0
			if h > side {
				vh = rng.IntN(h - side)
			}
			if w > side {
				vw = rng.IntN(w - side)
			}
			row := cand[k*d : (k+1)*d]
			for ci := 0; ci < ch; ci++ {
				v := float32(2 * eps)
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
			b.project(row, i*d)
		}
		l, err := r.logits(cand, len(act))
		if err != nil {
			return nil, err
		}
		keep := act[:0:0]
		for k, i := range act {
			if v := margin(l, k, y[i], z); v < lossBest[i] {
				lossBest[i] = v
				copy(best[i*d:(i+1)*d], cand[k*d:(k+1)*d])
			}
			if lossBest[i] > 0 {
				keep = append(keep, i)
			}
		}
		act = keep
	}
	return finish(r, x, y, best, clean)
}
