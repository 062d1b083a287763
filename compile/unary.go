package compile

import (
	"math"

	"github.com/hyperat/hyperat/kernels/vmath"

	"github.com/hyperat/hyperat/graph"
)

// Unary float functions are evaluated in float64 and rounded once, which is at
// least as accurate as the float32 libraries the goldens come from.
var unaryF = map[string]func(x float64) float64{
	"Sqrt":       math.Sqrt,
	"Erf":        math.Erf,
	"Exp":        math.Exp,
	"Log":        math.Log,
	"Tanh":       math.Tanh,
	"Abs":        math.Abs,
	"Neg":        func(x float64) float64 { return -x },
	"Reciprocal": func(x float64) float64 { return 1 / x },
	"Sigmoid":    func(x float64) float64 { return 1 / (1 + math.Exp(-x)) },
	"Relu":       func(x float64) float64 { return math.Max(x, 0) },
	"Sign": func(x float64) float64 {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return x
	},
}

var unaryI = map[string]func(x int64) int64{
	"Neg": func(x int64) int64 { return -x },
	"Abs": func(x int64) int64 {
		if x < 0 {
			return -x
		}
		return x
	},
	"Relu": func(x int64) int64 { return max(x, 0) },
	"Sign": func(x int64) int64 {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	},
}

func init() {
	for op := range unaryF {
		register(op, inferSame, kernelUnary)
	}
	register("Gelu", inferSame, kernelGelu)
	register("Not", inferSame, func(n *graph.Node) (Kernel, error) {
		return func(in, out []*graph.Tensor) {
			for i, v := range in[0].B {
				out[0].B[i] = !v
			}
		}, nil
	})
	register("Identity", inferSame, func(n *graph.Node) (Kernel, error) {
		return func(in, out []*graph.Tensor) { copyData(out[0], in[0]) }, nil
	})
	register("Cast", inferCast, kernelCast)
	register("Clip", inferSame, kernelClip)
}

func inferSame(n *graph.Node) error {
	setOut(n, 0, n.Inputs[0].DType, shapeOf(n.Inputs[0]))
	return nil
}

func kernelUnary(n *graph.Node) (Kernel, error) {
	switch n.Inputs[0].DType {
	case graph.Float32:
		f := unaryF[n.Op]
		return func(in, out []*graph.Tensor) {
			for i, v := range in[0].F {
				out[0].F[i] = float32(f(float64(v)))
			}
		}, nil
	case graph.Int64:
		f, ok := unaryI[n.Op]
		if ok {
			return func(in, out []*graph.Tensor) {
				for i, v := range in[0].I {
					out[0].I[i] = f(v)
				}
			}, nil
		}
	}
	return nil, nodeError(n, "not supported for %s", n.Inputs[0].DType)
}

// gelu is x * Phi(x), exactly or with the tanh approximation.
func gelu(x float64, tanh bool) float64 {
	if tanh {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
}

func kernelGelu(n *graph.Node) (Kernel, error) {
	if n.Inputs[0].DType != graph.Float32 {
		return nil, nodeError(n, "needs float input")
	}
	if n.Attrs.Str("approximate", "none") == "tanh" {
		return func(in, out []*graph.Tensor) {
			for i, v := range in[0].F {
				out[0].F[i] = float32(gelu(float64(v), true))
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

// Clip: optional min and max inputs (scalars); absent means unbounded.
func kernelClip(n *graph.Node) (Kernel, error) {
	if n.Inputs[0].DType != graph.Float32 {
		return nil, nodeError(n, "needs float input")
	}
	return func(in, out []*graph.Tensor) {
		lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
		if len(in) > 1 && in[1] != nil {
			lo = in[1].F[0]
		}
		if len(in) > 2 && in[2] != nil {
			hi = in[2].F[0]
		}
		for i, v := range in[0].F {
			out[0].F[i] = min(max(v, lo), hi)
		}
	}, nil
}
