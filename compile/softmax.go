package compile

import (
	"math"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels/vmath"
)

// Softmax and LogSoftmax along one axis, and SoftmaxGrad, which Softmax's
// gradient rule inserts.

func init() {
	define(opDef{name: "Softmax", arity: ins(1, 1), infer: inferSame, kernel: kernelSoftmax, grad: gradSoftmax})
	define(opDef{name: "LogSoftmax", arity: ins(1, 1), infer: inferSame, kernel: kernelSoftmax, grad: gradLogSoftmax})
	// SoftmaxGrad: (y, dy) -> dx for Softmax along attr axis (project operator)
	define(opDef{name: "SoftmaxGrad", arity: ins(2, 2), infer: inferFloatLikeInput, kernel: kernelSoftmaxGrad})
}

// axisSplit views a shape as [outer, n, inner] around axis.
func axisSplit(shape []int, axis int) (outer, n, inner int) {
	return graph.Numel(shape[:axis]), shape[axis], graph.Numel(shape[axis+1:])
}

func kernelSoftmax(n *graph.Node) (Kernel, error) {
	shape := shapeOf(n.Inputs[0])
	axis, err := normAxis(n, n.Attrs.Int("axis", -1), len(shape))
	if err != nil {
		return nil, err
	}
	outer, d, inner := axisSplit(shape, axis)
	logsm := n.Op == "LogSoftmax"
	var x, y []float32
	if !logsm && inner == 1 {
		// softmax over the last axis: whole rows at once, vectorized
		rows := func(lo, hi int) { vmath.SoftmaxRows(y[lo*d:hi*d], x[lo*d:hi*d], hi-lo, d) }
		return func(in, out []*graph.Tensor) {
			x, y = in[0].F, out[0].F
			parallel(outer, max(1, (1<<13)/d), rows)
		}, nil
	}
	body := func(lo, hi int) {
		for o := lo; o < hi; o++ {
			for k := 0; k < inner; k++ {
				base := o*d*inner + k
				m := float32(math.Inf(-1))
				for j := 0; j < d; j++ {
					m = max(m, x[base+j*inner])
				}
				var s float64
				for j := 0; j < d; j++ {
					e := expf(x[base+j*inner] - m)
					s += float64(e)
					if !logsm {
						y[base+j*inner] = e
					}
				}
				if logsm {
					ls := float32(math.Log(s))
					for j := 0; j < d; j++ {
						y[base+j*inner] = x[base+j*inner] - m - ls
					}
					continue
				}
				inv := 1 / s
				for j := 0; j < d; j++ {
					y[base+j*inner] = float32(float64(y[base+j*inner]) * inv)
				}
			}
		}
	}
	return func(in, out []*graph.Tensor) {
		x, y = in[0].F, out[0].F
		parallel(outer, max(1, (1<<13)/(d*inner)), body)
	}, nil
}

// dx = y (dy - sum_j dy_j y_j) along the axis.
func kernelSoftmaxGrad(n *graph.Node) (Kernel, error) {
	shape := shapeOf(n.Inputs[0])
	axis, err := normAxis(n, n.Attrs.Int("axis", -1), len(shape))
	if err != nil {
		return nil, err
	}
	outer, d, inner := axisSplit(shape, axis)
	var y, dy, dx []float32
	if inner == 1 {
		// rows: the usual case (attention over the last axis)
		rows := func(lo, hi int) {
			vmath.SoftmaxGradRows(dx[lo*d:hi*d], y[lo*d:hi*d], dy[lo*d:hi*d], hi-lo, d)
		}
		return func(in, out []*graph.Tensor) {
			y, dy, dx = in[0].F, in[1].F, out[0].F
			parallel(outer, max(1, (1<<13)/d), rows)
		}, nil
	}
	body := func(lo, hi int) {
		for o := lo; o < hi; o++ {
			for k := 0; k < inner; k++ {
				base := o*d*inner + k
				var s float64
				for j := 0; j < d; j++ {
					s += float64(dy[base+j*inner]) * float64(y[base+j*inner])
				}
				for j := 0; j < d; j++ {
					i := base + j*inner
					dx[i] = float32(float64(y[i]) * (float64(dy[i]) - s))
				}
			}
		}
	}
	return func(in, out []*graph.Tensor) {
		y, dy, dx = in[0].F, in[1].F, out[0].F
		parallel(outer, max(1, (1<<13)/(d*inner)), body)
	}, nil
}

// softmax: dx = y (dy - sum(dy y))
func gradSoftmax(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.op("SoftmaxGrad", graph.Attrs{"axis": n.Attrs.Int("axis", -1)}, n.Outputs[0], gy[0])}, nil
}

// log-softmax: dx = dy - exp(y) sum(dy)
func gradLogSoftmax(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	axis := n.Attrs.Int("axis", -1)
	s := b.op("ReduceSum", graph.Attrs{"keepdims": int64(1)}, gy[0], b.g.Const("axis", graph.I64([]int{1}, []int64{axis})))
	return []*graph.Value{b.sub(gy[0], b.mul(b.op("Exp", nil, n.Outputs[0]), s))}, nil
}

// Float32 e^x for the softmax kernel off the last axis: accurate to a few
// units in the last place of float32 (checked against float64 math in
// softmax_test.go), without a float64 library call per element.

const (
	ln2Hi  = 0.693145751953125     // ln 2, high bits (exact product with small n)
	ln2Lo  = 1.428606765330187e-06 // ln 2 - ln2Hi
	log2e  = 1.4426950408889634
	expMax = 88.72283905206835  // above: +Inf
	expMin = -87.33654475055310 // below: 0 (no subnormal results)
)

// expf is e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial
// (truncation below 1.2e-7 relative), scaled by 2^n through the exponent bits.
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > expMax:
		return float32(math.Inf(1))
	case x < expMin:
		return 0
	}
	// round to nearest by adding 1.5 * 2^23: exact IEEE float32 arithmetic
	n := (x*log2e + 12582912) - 12582912
	r := x - n*ln2Hi - n*ln2Lo
	p := 1 + r*(1+r*(0.5+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}
