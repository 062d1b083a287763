package vmath

import (
	"fmt"
	"math"
)

// PrintExpFit prints the two polynomials of the kernels, each of the form
// 1 + r q(r) with q of degree 4, minimizing the largest relative error; the
// constant term is fixed at 1 so that e^0 is exactly 1:
//
//   - e^r on |r| <= ln2/2 (a little more, for the rounding of n), for Exp
//     and SoftmaxRows;
//   - 2^f on |f| <= 1/2, for the e^(-x²/2) of Gelu and GeluGrad.
//
// The fit is Lawson's algorithm (iteratively reweighted least squares, which
// tends to the minimax solution) on Chebyshev points; the constants of the
// package are its coefficients rounded to float32.
func PrintExpFit() {
	fitExp1("e^r", math.Ln2/2+1e-5, 1)
	fitExp1("2^f", 0.5, math.Ln2)
}

// fitExp1 fits e^(k r) on |r| <= h.
func fitExp1(name string, h, k float64) {
	const (
		deg    = 4
		points = 4000
		iters  = 3000
	)
	var xs, fs, ws []float64
	for i := 0; i <= points; i++ {
		r := -h * math.Cos(math.Pi*float64(i)/points)
		if r == 0 {
			continue
		}
		// relative error of 1 + r q(r): |r| e^-kr |(e^kr - 1)/r - q(r)|
		xs = append(xs, r/h) // scaled for conditioning
		fs = append(fs, math.Expm1(k*r)/r)
		ws = append(ws, math.Abs(r)/math.Exp(k*r))
	}
	c, e := lawson(xs, fs, ws, deg, iters)
	fmt.Printf("%s = 1 + r (c1 + r (c2 + ...)), |r| <= %.6g: largest relative error %.3g\n", name, h, e)
	s := 1.0
	for j, v := range c {
		fmt.Printf("  c%d = %.17g (float32 %.9g)\n", j+1, v/s, float32(v/s))
		s *= h
	}
}

// lawson returns the polynomial c of degree deg that minimizes the largest
// |w_i (f_i - c(x_i))|, and that error.
func lawson(xs, fs, ws []float64, deg, iters int) ([]float64, float64) {
	m := deg + 1
	u := make([]float64, len(xs))
	for i := range u {
		u[i] = 1 / float64(len(xs))
	}
	best, bestErr := []float64(nil), math.Inf(1)
	for it := 0; it < iters; it++ {
		// Weighted least squares by the normal equations.
		a := make([][]float64, m)
		for j := range a {
			a[j] = make([]float64, m+1)
		}
		pw := make([]float64, m)
		for i, x := range xs {
			pw[0] = 1
			for k := 1; k < m; k++ {
				pw[k] = pw[k-1] * x
			}
			wt := u[i] * ws[i] * ws[i]
			for j := 0; j < m; j++ {
				for k := 0; k < m; k++ {
					a[j][k] += wt * pw[j] * pw[k]
				}
				a[j][m] += wt * pw[j] * fs[i]
			}
		}
		c := solve(a)
		worst, sum := 0.0, 0.0
		for i, x := range xs {
			e := math.Abs(ws[i] * (fs[i] - horner(c, x)))
			worst = math.Max(worst, e)
			u[i] *= e
			sum += u[i]
		}
		for i := range u {
			u[i] /= sum
		}
		if worst < bestErr {
			best, bestErr = c, worst
		}
	}
	return best, bestErr
}

func horner(c []float64, x float64) float64 {
	s := 0.0
	for k := len(c) - 1; k >= 0; k-- {
		s = s*x + c[k]
	}
	return s
}

// solve solves the augmented system a by Gaussian elimination with partial
// pivoting.
func solve(a [][]float64) []float64 {
	n := len(a)
	for i := 0; i < n; i++ {
		p := i
		for j := i + 1; j < n; j++ {
			if math.Abs(a[j][i]) > math.Abs(a[p][i]) {
				p = j
			}
		}
		a[i], a[p] = a[p], a[i]
		for j := i + 1; j < n; j++ {
			f := a[j][i] / a[i][i]
			for k := i; k <= n; k++ {
				a[j][k] -= f * a[i][k]
			}
		}
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := a[i][n]
		for k := i + 1; k < n; k++ {
			s -= a[i][k] * x[k]
		}
		x[i] = s / a[i][i]
	}
	return x
}
