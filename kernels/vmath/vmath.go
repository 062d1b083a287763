package vmath

import (
	"fmt"

	"github.com/hyperat/hyperat/kernels/cpu"
)

// Exp sets dst[i] = e^x[i] for every i. Below about -87.34, where e^x is no
// longer a normal float32, the result is 0; above about 88.72 it is +Inf; a
// NaN stays NaN. dst may be x itself, but must not overlap it otherwise. It
// panics if the lengths differ.
func Exp(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("vmath.Exp: len(dst) = %d, len(x) = %d", len(dst), len(x)))
	}
	active.exp(dst, x)
}

// Gelu sets dst[i] = x[i] Phi(x[i]), Phi the standard normal distribution
// function, for every i: the exact (erf) form of GELU. dst may be x itself,
// but must not overlap it otherwise. It panics if the lengths differ.
func Gelu(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("vmath.Gelu: len(dst) = %d, len(x) = %d", len(dst), len(x)))
	}
	active.gelu(dst, x)
}

// GeluGrad sets dst[i] = dy[i] (Phi(x[i]) + x[i] phi(x[i])), the gradient of
// Gelu at x[i] times dy[i], for every i. dst may be x or dy itself, but must
// not overlap them otherwise. It panics if the lengths differ.
func GeluGrad(dst, x, dy []float32) {
	if len(dst) != len(x) || len(dy) != len(x) {
		panic(fmt.Sprintf("vmath.GeluGrad: len(dst) = %d, len(x) = %d, len(dy) = %d", len(dst), len(x), len(dy)))
	}
	active.geluGrad(dst, x, dy)
}

// SoftmaxRows sets each of the rows rows of n elements of dst, x[r*n:(r+1)*n]
// for row r, to the softmax of that row of x: e^(x[i] - m), m the largest
// element of the row, divided by their sum. The sum is accumulated in float64
// in a fixed order, so a row's result depends only on the row. A row that
// holds a NaN, or +Inf, or only -Inf becomes all NaN. dst may be x itself, but
// must not overlap it otherwise. It panics unless len(x) and len(dst) are
// rows*n.
func SoftmaxRows(dst, x []float32, rows, n int) {
	if rows < 0 || n < 0 || len(x) != rows*n || len(dst) != rows*n {
		panic(fmt.Sprintf("vmath.SoftmaxRows: %d rows of %d, len(dst) = %d, len(x) = %d", rows, n, len(dst), len(x)))
	}
	if n == 0 {
		return
	}
	r := 0
	for ; r+2 <= rows; r += 2 { // two rows a call: see softmaxRow2Go
		active.softmaxRow2(dst[r*n:(r+2)*n], x[r*n:(r+2)*n], n)
	}
	if r < rows {
		active.softmaxRow(dst[r*n:(r+1)*n], x[r*n:(r+1)*n])
	}
}

// The elementwise operations of Arith.
const (
	Add = iota
	Sub
	Mul
	Div
)

// Arith sets dst[i] = x[i] op y[i] for every i, op one of Add, Sub, Mul and
// Div, rounded as float32 arithmetic rounds it (every variant gives the
// same bits). dst may be x or y itself, but must not overlap them
// otherwise. It panics if the lengths differ.
func Arith(op int, dst, x, y []float32) {
	if len(dst) != len(x) || len(y) != len(x) {
		panic(fmt.Sprintf("vmath.Arith: len(dst) = %d, len(x) = %d, len(y) = %d", len(dst), len(x), len(y)))
	}
	active.arith[op](dst, x, y)
}

// RowSums returns the sum of x and the sum of its squares, accumulated in
// float64 in a fixed order (sixteen lanes, element i in lane i % 16, added
// pairwise at the end), so that every variant gives the same bits: the
// statistics of a LayerNorm row.
func RowSums(x []float32) (sum, sumSq float64) {
	return active.rowSums(x)
}

// NormRow sets y[i] = (x[i] - m) s g[i] + b[i] for every i, each operation
// rounded to float32: a LayerNorm row with mean m, inverse deviation s, scale
// g and bias b. y may be x itself, but must not overlap it otherwise. It
// panics unless y, g and b are as long as x.
func NormRow(y, x, g, b []float32, m, s float32) {
	if len(y) != len(x) || len(g) != len(x) || len(b) != len(x) {
		panic(fmt.Sprintf("vmath.NormRow: len(y) = %d, len(x) = %d, len(g) = %d, len(b) = %d", len(y), len(x), len(g), len(b)))
	}
	active.normRow(y, x, g, b, m, s)
}

// NormGradSums returns the sums over a LayerNorm row of t = dy g and of
// t (x - m) s, accumulated in float64 as RowSums does. It panics unless dy
// and g are as long as x.
func NormGradSums(x, dy, g []float32, m, s float32) (sg, sgx float64) {
	if len(dy) != len(x) || len(g) != len(x) {
		panic(fmt.Sprintf("vmath.NormGradSums: len(x) = %d, len(dy) = %d, len(g) = %d", len(x), len(dy), len(g)))
	}
	return active.gradSums(x, dy, g, m, s)
}

// NormGradRow sets dx[i] = s (dy[i] g[i] - mg - (x[i] - m) s mgx) for every
// i, each operation rounded to float32: the input gradient of a LayerNorm
// row, mg and mgx the means of NormGradSums' sums. dx may be x or dy itself,
// but must not overlap them otherwise. It panics unless dx, dy and g are as
// long as x.
func NormGradRow(dx, x, dy, g []float32, m, s, mg, mgx float32) {
	if len(dx) != len(x) || len(dy) != len(x) || len(g) != len(x) {
		panic(fmt.Sprintf("vmath.NormGradRow: len(dx) = %d, len(x) = %d, len(dy) = %d, len(g) = %d", len(dx), len(x), len(dy), len(g)))
	}
	active.gradRow(dx, x, dy, g, m, s, mg, mgx)
}

// SoftmaxGradRows sets each of the rows rows of n elements of dx to
// y (dy - s), s the sum of dy y over that row of y and dy: the input
// gradient of a softmax whose output is y. The sum is accumulated in float64
// as SoftmaxRows' is, then rounded to float32. dx may be y or dy itself, but
// must not overlap them otherwise. It panics unless dx, y and dy are rows*n
// long.
func SoftmaxGradRows(dx, y, dy []float32, rows, n int) {
	if rows < 0 || n < 0 || len(y) != rows*n || len(dy) != rows*n || len(dx) != rows*n {
		panic(fmt.Sprintf("vmath.SoftmaxGradRows: %d rows of %d, len(dx) = %d, len(y) = %d, len(dy) = %d", rows, n, len(dx), len(y), len(dy)))
	}
	if n == 0 {
		return
	}
	f := active.smGradRow
	for r := 0; r < rows; r++ {
		f(dx[r*n:(r+1)*n], y[r*n:(r+1)*n], dy[r*n:(r+1)*n])
	}
}

// Variant is the name of the implementation in use: "avx512", "avx2" or "go".
func Variant() string { return active.name }

// variant is one implementation of the kernels.
type variant struct {
	name        string
	env         string // the cpu switch that turns the variant off
	supported   bool   // by this CPU and build
	exp         func(dst, x []float32)
	gelu        func(dst, x []float32)
	geluGrad    func(dst, x, dy []float32)
	softmaxRow  func(dst, x []float32)
	softmaxRow2 func(dst, x []float32, n int)
	arith       [4]func(dst, x, y []float32) // Add, Sub, Mul, Div
	rowSums     func(x []float32) (sum, sumSq float64)
	normRow     func(y, x, g, b []float32, m, s float32)
	gradSums    func(x, dy, g []float32, m, s float32) (sg, sgx float64)
	gradRow     func(dx, x, dy, g []float32, m, s, mg, mgx float32)
	smGradRow   func(dx, y, dy []float32)
}

// goVariant is the plain-Go implementation, always available.
var goVariant = &variant{
	name: "go", supported: true,
	exp: expGo, gelu: geluGo, geluGrad: geluGradGo, softmaxRow: softmaxRowGo, softmaxRow2: softmaxRow2Go,
	arith:   [4]func(dst, x, y []float32){addGo, subGo, mulGo, divGo},
	rowSums: rowSumsGo, normRow: normRowGo, gradSums: normGradSumsGo, gradRow: normGradRowGo,
	smGradRow: softmaxGradRowGo,
}

// variants lists every implementation in order of preference.
var variants = append(archVariants(), goVariant)

// active is the variant in use: the first the CPU supports and the
// environment does not turn off.
var active = choose()

func choose() *variant {
	for _, v := range variants {
		if v.supported && !cpu.Off(v.env) {
			return v
		}
	}
	return goVariant
}
