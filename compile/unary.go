package compile

import (
	"math"

	"github.com/hyperat/hyperat/kernels/vmath"

	"github.com/hyperat/hyperat/graph"
)

// unaryOp is an elementwise function: f on float32 data, evaluated in
// float64 and rounded once (at least as accurate as the float32 libraries
// the goldens come from), and i on int64 data where the operator takes it.
type unaryOp struct {
	f func(x float64) float64
	i func(x int64) int64
}

func init() {
	define(opDef{name: "Sqrt", arity: ins(1, 1), infer: inferSame, kernel: unaryOp{f: math.Sqrt}.kernel, grad: gradSqrt})
	define(opDef{name: "Erf", arity: ins(1, 1), infer: inferSame, kernel: unaryOp{f: math.Erf}.kernel, grad: gradErf})
	define(opDef{name: "Exp", arity: ins(1, 1), infer: inferSame, kernel: unaryOp{f: math.Exp}.kernel, grad: gradExp})
	define(opDef{name: "Log", arity: ins(1, 1), infer: inferSame, kernel: unaryOp{f: math.Log}.kernel, grad: gradLog})
	define(opDef{name: "Tanh", arity: ins(1, 1), infer: inferSame, kernel: unaryOp{f: math.Tanh}.kernel, grad: gradTanh})
	define(opDef{name: "Sigmoid", arity: ins(1, 1), infer: inferSame, grad: gradSigmoid,
		kernel: unaryOp{f: func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }}.kernel})
	define(opDef{name: "Relu", arity: ins(1, 1), infer: inferSame, grad: gradRelu, kernel: unaryOp{
		f: func(x float64) float64 { return math.Max(x, 0) },
		i: func(x int64) int64 { return max(x, 0) }}.kernel})
	define(opDef{name: "Neg", arity: ins(1, 1), infer: inferSame, grad: gradNeg, kernel: unaryOp{
		f: func(x float64) float64 { return -x },
		i: func(x int64) int64 { return -x }}.kernel})
	define(opDef{name: "Abs", arity: ins(1, 1), infer: inferSame, grad: gradAbs, kernel: unaryOp{f: math.Abs, i: func(x int64) int64 {
		if x < 0 {
			return -x
		}
		return x
	}}.kernel})
	define(opDef{name: "Reciprocal", arity: ins(1, 1), infer: inferSame, grad: gradReciprocal,
		kernel: unaryOp{f: func(x float64) float64 { return 1 / x }}.kernel})
	define(opDef{name: "Sign", arity: ins(1, 1), infer: inferSame, kernel: unaryOp{f: signF, i: signI}.kernel, grad: gradZero})
	define(opDef{name: "Gelu", arity: ins(1, 1), infer: inferSame, kernel: kernelGelu, grad: gradGelu})
	// GeluGrad: (x, dy) -> dx, attr approximate (project operator)
	define(opDef{name: "GeluGrad", arity: ins(2, 2), infer: inferFloatLikeInput, kernel: kernelGeluGrad})
	define(opDef{name: "Not", arity: ins(1, 1), infer: inferSame, kernel: kernelNot})
	define(opDef{name: "Identity", arity: ins(1, 1), infer: inferSame, kernel: kernelCopy, grad: passThrough, alias: true})
	define(opDef{name: "Cast", arity: ins(1, 1), infer: inferCast, kernel: kernelCast, grad: passThrough}) // only float->float casts carry gradients
	define(opDef{name: "Clip", arity: ins(1, 3), infer: inferSame, kernel: kernelClip, grad: gradClip})
}

// gradZero: a piecewise constant function (Sign) has a zero derivative
// wherever it has one.
func gradZero(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.mul(gy[0], b.scalar(0))}, nil
}

func signF(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return x
}

func signI(x int64) int64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

func kernelNot(n *graph.Node) (Kernel, error) {
	return func(in, out []*graph.Tensor) {
		for i, v := range in[0].B {
			out[0].B[i] = !v
		}
	}, nil
}

func inferSame(n *graph.Node) error {
	setOut(n, 0, n.Inputs[0].DType, shapeOf(n.Inputs[0]))
	return nil
}

// inferFloatLikeInput: the output is float32 of input 0's shape (the
// gradient ops SoftmaxGrad and GeluGrad).
func inferFloatLikeInput(n *graph.Node) error {
	setOut(n, 0, graph.Float32, shapeOf(n.Inputs[0]))
	return nil
}

func (op unaryOp) kernel(n *graph.Node) (Kernel, error) {
	switch n.Inputs[0].DType {
	case graph.Float32:
		f := op.f
		return func(in, out []*graph.Tensor) {
			for i, v := range in[0].F {
				out[0].F[i] = float32(f(float64(v)))
			}
		}, nil
	case graph.Int64:
		if f := op.i; f != nil {
			return func(in, out []*graph.Tensor) {
				for i, v := range in[0].I {
					out[0].I[i] = f(v)
				}
			}, nil
		}
	}
	return nil, nodeError(n, "not supported for %s", n.Inputs[0].DType)
}

// geluTanh is GELU's tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
// in float64. The exact (erf) form runs in vmath.Gelu.
func geluTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

func kernelGelu(n *graph.Node) (Kernel, error) {
	if n.Inputs[0].DType != graph.Float32 {
		return nil, nodeError(n, "needs float input")
	}
	if n.Attrs.Str("approximate", "none") == "tanh" {
		return func(in, out []*graph.Tensor) {
			for i, v := range in[0].F {
				out[0].F[i] = float32(geluTanh(float64(v)))
			}
		}, nil
	}
	var x, y []float32
	body := func(lo, hi int) { vmath.Gelu(y[lo:hi], x[lo:hi]) }
	return func(in, out []*graph.Tensor) {
		x, y = in[0].F, out[0].F
		parallel(len(x), 1<<13, body)
	}, nil
}

// geluTanhGrad is the derivative of geluTanh. The exact form's derivative,
// Phi(x) + x phi(x), runs in vmath.GeluGrad.
func geluTanhGrad(x float64) float64 {
	c := math.Sqrt(2 / math.Pi)
	u := c * (x + 0.044715*x*x*x)
	t := math.Tanh(u)
	return 0.5*(1+t) + 0.5*x*(1-t*t)*c*(1+3*0.044715*x*x)
}

// GeluGrad (x, dy) -> dx, inserted by Gelu's rule.
func kernelGeluGrad(n *graph.Node) (Kernel, error) {
	if n.Attrs.Str("approximate", "none") == "tanh" {
		return func(in, out []*graph.Tensor) {
			x, dy, dx := in[0].F, in[1].F, out[0].F
			for i, v := range x {
				dx[i] = float32(float64(dy[i]) * geluTanhGrad(float64(v)))
			}
		}, nil
	}
	var x, dy, dx []float32
	body := func(lo, hi int) { vmath.GeluGrad(dx[lo:hi], x[lo:hi], dy[lo:hi]) }
	return func(in, out []*graph.Tensor) {
		x, dy, dx = in[0].F, in[1].F, out[0].F
		parallel(len(x), 1<<13, body)
	}, nil
}

func copyData(dst, src *graph.Tensor) {
	switch src.DType {
	case graph.Float32:
		copy(dst.F, src.F)
	case graph.Int64:
		copy(dst.I, src.I)
	case graph.Bool:
		copy(dst.B, src.B)
	}
}

func inferCast(n *graph.Node) error {
	setOut(n, 0, graph.DType(n.Attrs.Int("to", int64(graph.Float32))), shapeOf(n.Inputs[0]))
	return nil
}

// Cast: float to int truncates toward zero, anything to bool is x != 0.
func kernelCast(n *graph.Node) (Kernel, error) {
	from, to := n.Inputs[0].DType, n.Outputs[0].DType
	return func(in, out []*graph.Tensor) {
		src, dst := in[0], out[0]
		if from == to {
			copyData(dst, src)
			return
		}
		for i := 0; i < src.Len(); i++ {
			var f float64
			switch from {
			case graph.Float32:
				f = float64(src.F[i])
			case graph.Int64:
				f = float64(src.I[i])
			case graph.Bool:
				if src.B[i] {
					f = 1
				}
			}
			switch to {
			case graph.Float32:
				if from == graph.Int64 {
					dst.F[i] = float32(src.I[i])
				} else {
					dst.F[i] = float32(f)
				}
			case graph.Int64:
				if from == graph.Float32 {
					dst.I[i] = int64(src.F[i])
				} else {
					dst.I[i] = int64(f)
				}
			case graph.Bool:
				dst.B[i] = f != 0
			}
		}
	}, nil
}

// Clip: optional min and max inputs (scalars of the input's type); absent
// means unbounded. Integer tensors (every ONNX integer type is int64 here)
// clip as integers.
func kernelClip(n *graph.Node) (Kernel, error) {
	dt := n.Inputs[0].DType
	if dt != graph.Float32 && dt != graph.Int64 {
		return nil, nodeError(n, "input is %s; Clip takes numbers", dt)
	}
	for i := 1; i < len(n.Inputs); i++ {
		if b := n.Inputs[i]; b != nil && (b.DType != dt || graph.Numel(shapeOf(b)) != 1) {
			return nil, nodeError(n, "bound %d (%s) must be one %s, got %s%v", i, b.Name, dt, b.DType, shapeOf(b))
		}
	}
	bound := func(in []*graph.Tensor, i int) *graph.Tensor {
		if len(in) > i {
			return in[i]
		}
		return nil
	}
	if dt == graph.Int64 {
		return func(in, out []*graph.Tensor) {
			lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
			if b := bound(in, 1); b != nil {
				lo = b.I[0]
			}
			if b := bound(in, 2); b != nil {
				hi = b.I[0]
			}
			for i, v := range in[0].I {
				out[0].I[i] = min(max(v, lo), hi)
			}
		}, nil
	}
	return func(in, out []*graph.Tensor) {
		lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
		if b := bound(in, 1); b != nil {
			lo = b.F[0]
		}
		if b := bound(in, 2); b != nil {
			hi = b.F[0]
		}
		for i, v := range in[0].F {
			out[0].F[i] = min(max(v, lo), hi)
		}
	}, nil
}

// d sqrt(x) = dx / (2 sqrt(x))
func gradSqrt(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.div(b.mul(gy[0], b.scalar(0.5)), n.Outputs[0])}, nil
}

// d erf(x) = 2/sqrt(pi) exp(-x^2) dx
func gradErf(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	x := n.Inputs[0]
	e := b.op("Exp", nil, b.neg(b.mul(x, x)))
	return []*graph.Value{b.mul(gy[0], b.mul(e, b.scalar(float32(2/math.Sqrt(math.Pi)))))}, nil
}

// d exp(x) = exp(x) dx
func gradExp(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.mul(gy[0], n.Outputs[0])}, nil
}

// d log(x) = dx / x
func gradLog(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.div(gy[0], n.Inputs[0])}, nil
}

// d tanh(x) = (1 - tanh^2) dx
func gradTanh(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	y := n.Outputs[0]
	return []*graph.Value{b.mul(gy[0], b.sub(b.scalar(1), b.mul(y, y)))}, nil
}

// d sigmoid(x) = s (1 - s) dx
func gradSigmoid(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	y := n.Outputs[0]
	return []*graph.Value{b.mul(gy[0], b.mul(y, b.sub(b.scalar(1), y)))}, nil
}

// d relu(x) = [x > 0] dx
func gradRelu(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	mask := b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, b.op("Greater", nil, n.Inputs[0], b.scalar(0)))
	return []*graph.Value{b.mul(gy[0], mask)}, nil
}

func gradNeg(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.neg(gy[0])}, nil
}

// d |x| = sign(x) dx
func gradAbs(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.mul(gy[0], b.op("Sign", nil, n.Inputs[0]))}, nil
}

// d (1/x) = -dx / x^2
func gradReciprocal(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	y := n.Outputs[0]
	return []*graph.Value{b.neg(b.mul(gy[0], b.mul(y, y)))}, nil
}

func gradGelu(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.op("GeluGrad", graph.Attrs{"approximate": n.Attrs.Str("approximate", "none")}, n.Inputs[0], gy[0])}, nil
}

func passThrough(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{gy[0]}, nil
}

// clip: y = min(max(x, lo), hi) is x, lo or hi at each element, and the
// gradient goes to the one it is: to x where y == x, to hi where y == hi
// otherwise (also when lo > hi, which makes y hi everywhere), to lo elsewhere.
// The bounds are scalars; their gradients are the sums over their elements.
func gradClip(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	x, y := n.Inputs[0], n.Outputs[0]
	float := func(m *graph.Value) *graph.Value { return b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, m) }
	isX := b.op("Equal", nil, x, y)
	gx := make([]*graph.Value, len(n.Inputs))
	gx[0] = b.mul(gy[0], float(isX))
	var isHi *graph.Value
	if hi := n.In(2); hi != nil {
		isHi = b.op("And", nil, b.op("Not", nil, isX), b.op("Equal", nil, y, hi))
		if need[2] {
			gx[2] = b.sumTo(b.mul(gy[0], float(isHi)), inShape(n, 2))
		}
	}
	if lo := n.In(1); lo != nil && need[1] {
		isLo := b.op("Not", nil, isX)
		if isHi != nil {
			isLo = b.op("And", nil, isLo, b.op("Not", nil, isHi))
		}
		gx[1] = b.sumTo(b.mul(gy[0], float(isLo)), inShape(n, 1))
	}
	return gx, nil
}
