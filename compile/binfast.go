package compile

import (
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels/vmath"
)

// arith is the float32 arithmetic of Add, Sub, Mul and Div with loops written
// out per broadcast pattern of a row (both operands contiguous, or one of them
// repeated), so the common cases run without a call per element.
type arith uint8

// In vmath's order: both contiguous operands go to vmath.Arith.
const (
	opAdd arith = vmath.Add
	opSub arith = vmath.Sub
	opMul arith = vmath.Mul
	opDiv arith = vmath.Div
)

// row computes z[j] = x[j*sx] op y[j*sy] for j < len(z), sx and sy in {0, 1}.
func (o arith) row(z, x, y []float32, sx, sy int) {
	switch {
	case sx == 1 && sy == 1:
		vmath.Arith(int(o), z, x[:len(z)], y[:len(z)])
	case sx == 1 && sy == 0:
		x = x[:len(z)]
		b := y[0]
		switch o {
		case opAdd:
			for j := range z {
				z[j] = x[j] + b
			}
		case opSub:
			for j := range z {
				z[j] = x[j] - b
			}
		case opMul:
			for j := range z {
				z[j] = x[j] * b
			}
		case opDiv:
			for j := range z {
				z[j] = x[j] / b
			}
		}
	case sx == 0 && sy == 1:
		y = y[:len(z)]
		a := x[0]
		switch o {
		case opAdd:
			for j := range z {
				z[j] = a + y[j]
			}
		case opSub:
			for j := range z {
				z[j] = a - y[j]
			}
		case opMul:
			for j := range z {
				z[j] = a * y[j]
			}
		case opDiv:
			for j := range z {
				z[j] = a / y[j]
			}
		}
	default:
		var v float32
		switch o {
		case opAdd:
			v = x[0] + y[0]
		case opSub:
			v = x[0] - y[0]
		case opMul:
			v = x[0] * y[0]
		case opDiv:
			v = x[0] / y[0]
		}
		for j := range z {
			z[j] = v
		}
	}
}

// arithKernel is the broadcasting kernel of a float arithmetic op, split over
// all cores for large outputs.
func arithKernel(o arith, b *bcast) Kernel {
	var x, y, z []float32
	if b.flat[0] && b.flat[1] {
		body := func(lo, hi int) { o.row(z[lo:hi], x[lo:], y[lo:], 1, 1) }
		return func(in, out []*graph.Tensor) {
			x, y, z = in[0].F, in[1].F, out[0].F
			parallel(b.numel, 1<<14, body)
		}
	}
	sx, sy := b.step[0], b.step[1]
	body := func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o.row(z[r*b.inner:(r+1)*b.inner], x[b.rowOff[0][r]:], y[b.rowOff[1][r]:], sx, sy)
		}
	}
	grain := max(1, (1<<14)/max(b.inner, 1))
	return func(in, out []*graph.Tensor) {
		x, y, z = in[0].F, in[1].F, out[0].F
		parallel(b.rows, grain, body)
	}
}
