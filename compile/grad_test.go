package compile

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// gradCase is a small graph: inputs of the given shapes, and a function adding
// the nodes under test. Inputs are drawn from [lo, hi].
type gradCase struct {
	name   string
	shapes [][]int
	lo, hi float32
	build  func(g *graph.Graph, x []*graph.Value) *graph.Value
}

func ci(g *graph.Graph, v ...int64) *graph.Value {
	return g.Const("ints", graph.I64([]int{len(v)}, v))
}
func cf(g *graph.Graph, v float32) *graph.Value { return g.Const("f", graph.ScalarF32(v)) }
func op(g *graph.Graph, name string, attrs graph.Attrs, in ...*graph.Value) *graph.Value {
	return g.Op(name, attrs, in...)
}
func unary(name string, lo, hi float32) gradCase {
	return gradCase{name, [][]int{{3, 5}}, lo, hi, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, name, nil, x[0]) }}
}

var gradCases = []gradCase{
	{"Add/broadcast", [][]int{{2, 3, 4}, {4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Add", nil, x[0], x[1]) }},
	{"Sub/broadcast-both", [][]int{{3, 1}, {1, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Sub", nil, x[0], x[1]) }},
	{"Mul/broadcast", [][]int{{2, 3, 4}, {3, 1}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Mul", nil, x[0], x[1]) }},
	{"Mul/same", [][]int{{2, 3}, {2, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Mul", nil, x[0], x[1]) }},
	// a in [7.2, 7.5], b in [3.2, 3.5]: trunc(a/b) = 2 away from its jumps
	{"Mod/fmod", [][]int{{2, 3}, {3}}, 0.2, 0.5, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Mod", graph.Attrs{"fmod": int64(1)}, op(g, "Add", nil, x[0], cf(g, 7)), op(g, "Add", nil, x[1], cf(g, 3)))
	}},
	{"Mod/negative", [][]int{{2, 3}, {3}}, 0.2, 0.5, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Mod", graph.Attrs{"fmod": int64(1)}, op(g, "Sub", nil, cf(g, -7), x[0]), op(g, "Add", nil, x[1], cf(g, 3)))
	}},
	{"Sign", [][]int{{3, 5}}, 0.2, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Mul", nil, op(g, "Sign", nil, x[0]), x[0])
	}},
	{"Div", [][]int{{2, 3}, {3}}, 0.5, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Div", nil, x[0], x[1]) }},
	{"Pow/const-exponent", [][]int{{2, 3}}, 0.5, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Pow", nil, x[0], cf(g, 2)) }},
	{"Pow/both", [][]int{{2, 3}, {3}}, 0.5, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Pow", nil, x[0], x[1]) }},
	{"Pow/int-exponent", [][]int{{2, 3}}, 0.5, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Pow", nil, x[0], g.Const("e", graph.I64([]int{3}, []int64{2, 3, -1})))
	}},
	unary("Sqrt", 0.5, 2), unary("Erf", -2, 2), unary("Exp", -2, 2), unary("Log", 0.5, 3),
	unary("Tanh", -2, 2), unary("Sigmoid", -3, 3), unary("Neg", -1, 1), unary("Reciprocal", 0.5, 2),
	unary("Relu", 0.1, 1), unary("Abs", 0.1, 1), unary("Identity", -1, 1),
	{"Relu/negative", [][]int{{4}}, -1, -0.1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Relu", nil, x[0]) }},
	{"Gelu/erf", [][]int{{3, 5}}, -3, 3, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Gelu", graph.Attrs{"approximate": "none"}, x[0])
	}},
	{"Gelu/tanh", [][]int{{3, 5}}, -3, 3, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Gelu", graph.Attrs{"approximate": "tanh"}, x[0])
	}},
	{"Cast/float", [][]int{{3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Cast", graph.Attrs{"to": int64(graph.Float32)}, x[0])
	}},
	{"Clip", [][]int{{10}}, -2, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Clip", nil, x[0], cf(g, -0.5), cf(g, 0.7))
	}},
	{"Clip/bounds", [][]int{{12}, {}, {}}, -2, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Clip", nil, x[0], x[1], x[2])
	}},
	{"Clip/min-above-max", [][]int{{6}, {}, {}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Clip", nil, x[0], op(g, "Add", nil, x[1], cf(g, 3)), op(g, "Sub", nil, x[2], cf(g, 3)))
	}},
	{"Clip/max-only", [][]int{{2, 5}, {}}, -2, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return g.AddNode("Clip", "clip", []*graph.Value{x[0], nil, x[1]}, nil, "clipped").Outputs[0]
	}},
	{"Where", [][]int{{2, 3}, {3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		c := g.Const("cond", &graph.Tensor{DType: graph.Bool, Shape: []int{2, 3}, B: []bool{true, false, true, false, false, true}})
		return op(g, "Where", nil, c, x[0], x[1])
	}},
	{"Max", [][]int{{2, 3}, {3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Max", nil, x[0], x[1]) }},
	{"Min", [][]int{{2, 3}, {2, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Min", nil, x[0], x[1]) }},
	{"Softmax/last", [][]int{{2, 3, 5}}, -2, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Softmax", graph.Attrs{"axis": int64(-1)}, x[0])
	}},
	{"Softmax/middle", [][]int{{2, 4, 3}}, -2, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Softmax", graph.Attrs{"axis": int64(1)}, x[0])
	}},
	{"LogSoftmax", [][]int{{3, 5}}, -2, 2, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "LogSoftmax", graph.Attrs{"axis": int64(-1)}, x[0])
	}},
	{"Attention", [][]int{{2, 3, 4}, {2, 4, 5}, {2, 5, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return g.AddNode("Attention", "attn", x, graph.Attrs{"alpha": float32(0.7)}, "o", "p").Outputs[0]
	}},
	{"Attention/recognized", [][]int{{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		kt := op(g, "Transpose", graph.Attrs{"perm": []int64{0, 1, 3, 2}}, x[1])
		s := op(g, "Div", nil, op(g, "MatMul", nil, x[0], kt), cf(g, 2))
		return op(g, "MatMul", nil, op(g, "Softmax", graph.Attrs{"axis": int64(-1)}, s), x[2])
	}},
	{"Attention/bias", [][]int{{2, 2, 3, 4}, {2, 2, 4, 5}, {2, 2, 5, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		bias := g.Const("bias", graph.F32([]int{2, 1, 3, 5}, []float32{
			0.3, -1, 0.2, 0.9, -0.4, 0, 0.5, -0.7, 0.1, 1.2, -0.2, 0.4, 0.8, -1.1, 0.6,
			-0.5, 0.7, 0, -0.3, 0.2, 1, -0.9, 0.4, 0.3, -0.6, 0.1, 0.5, -1.2, 0.8, 0.2,
		}))
		return g.AddNode("Attention", "attn", append(x, bias), graph.Attrs{"alpha": float32(0.5)}, "o", "p").Outputs[0]
	}},
	{"LayerNormalization/last", [][]int{{2, 3, 6}, {6}, {6}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "LayerNormalization", graph.Attrs{"axis": int64(-1), "epsilon": float32(1e-5)}, x[0], x[1], x[2])
	}},
	{"LayerNormalization/two-axes-no-bias", [][]int{{2, 3, 4}, {3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "LayerNormalization", graph.Attrs{"axis": int64(1), "epsilon": float32(1e-5)}, x[0], x[1])
	}},
	{"LayerNormalization/mean-invstd", [][]int{{2, 3, 4}, {3, 4}, {3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		n := g.AddNode("LayerNormalization", "ln", []*graph.Value{x[0], x[1], x[2]}, graph.Attrs{"axis": int64(1), "epsilon": float32(1e-5)}, "y", "mean", "inv")
		return op(g, "Add", nil, n.Outputs[0], op(g, "Mul", nil, n.Outputs[1], n.Outputs[2]))
	}},
	{"LayerNormalization/statistics-only", [][]int{{3, 5}, {5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		n := g.AddNode("LayerNormalization", "ln", []*graph.Value{x[0], x[1]}, graph.Attrs{"axis": int64(-1), "epsilon": float32(1e-3)}, "y", "mean", "inv")
		return op(g, "Concat", graph.Attrs{"axis": int64(0)}, n.Outputs[1], n.Outputs[2])
	}},
	{"LayerNormalization/mean-only", [][]int{{3, 5}, {5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		n := g.AddNode("LayerNormalization", "ln", []*graph.Value{x[0], x[1]}, graph.Attrs{"axis": int64(-1), "epsilon": float32(1e-3)}, "y", "mean")
		return op(g, "Mul", nil, n.Outputs[0], n.Outputs[1])
	}},
	{"ReduceSum/keep", [][]int{{2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ReduceSum", graph.Attrs{"keepdims": int64(1)}, x[0], ci(g, 1))
	}},
	{"ReduceMean/drop", [][]int{{2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ReduceMean", graph.Attrs{"keepdims": int64(0)}, x[0], ci(g, 0, -1))
	}},
	{"ReduceMean/all", [][]int{{2, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ReduceMean", graph.Attrs{"keepdims": int64(0)}, x[0])
	}},
	{"ReduceMax", [][]int{{3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ReduceMax", graph.Attrs{"keepdims": int64(0)}, x[0], ci(g, 1))
	}},
	{"ReduceL2/keep", [][]int{{2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ReduceL2", graph.Attrs{"keepdims": int64(1)}, x[0], ci(g, -1))
	}},
	{"ReduceL2/all", [][]int{{3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ReduceL2", graph.Attrs{"keepdims": int64(0)}, x[0])
	}},
	{"ReduceL2/noop", [][]int{{3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ReduceL2", graph.Attrs{"keepdims": int64(1), "noop_with_empty_axes": int64(1)}, x[0])
	}},
	{"MatMul/2d", [][]int{{3, 4}, {4, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }},
	{"MatMul/3d-2d", [][]int{{2, 3, 4}, {4, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }},
	{"MatMul/batched", [][]int{{2, 2, 3, 4}, {2, 2, 4, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }},
	{"MatMul/broadcast-batch", [][]int{{1, 3, 2, 4}, {2, 1, 4, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }},
	{"MatMul/vec-mat", [][]int{{4}, {4, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }},
	{"MatMul/mat-vec", [][]int{{2, 3, 4}, {4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }},
	{"Conv/stride-pad-bias", [][]int{{2, 2, 6, 5}, {3, 2, 3, 2}, {3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Conv", graph.Attrs{"strides": []int64{2, 1}, "pads": []int64{1, 0, 1, 1}}, x[0], x[1], x[2])
	}},
	{"Conv/group-dilation", [][]int{{1, 4, 7, 7}, {4, 2, 2, 2}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Conv", graph.Attrs{"group": int64(2), "dilations": []int64{2, 2}}, x[0], x[1])
	}},
	{"Conv/patchify", [][]int{{2, 1, 8, 8}, {5, 1, 4, 4}, {5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Conv", graph.Attrs{"strides": []int64{4, 4}}, x[0], x[1], x[2])
	}},
	{"Pad/constant-value", [][]int{{2, 3, 4}, {}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Pad", graph.Attrs{"mode": "constant"}, x[0], ci(g, 0, 1, 2, 0, 2, -1), x[1])
	}},
	{"Pad/reflect", [][]int{{1, 2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Pad", graph.Attrs{"mode": "reflect"}, x[0], ci(g, 0, 0, 2, 3, 0, 0, 4, 1))
	}},
	{"Pad/edge", [][]int{{2, 3, 2}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Pad", graph.Attrs{"mode": "edge"}, x[0], ci(g, 1, 0, 2, 0, 3, 1))
	}},
	{"Pad/wrap-axes", [][]int{{2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return g.AddNode("Pad", "pad", []*graph.Value{x[0], ci(g, 2, -1, 1, 5), nil, ci(g, -1, 1)}, graph.Attrs{"mode": "wrap"}, "padded").Outputs[0]
	}},
	{"GlobalAveragePool", [][]int{{2, 3, 4, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "GlobalAveragePool", nil, x[0])
	}},
	{"AveragePool/pads-exclude", [][]int{{2, 2, 6, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "AveragePool", graph.Attrs{"kernel_shape": []int64{3, 3}, "strides": []int64{2, 2}, "pads": []int64{1, 1, 1, 1}}, x[0])
	}},
	{"AveragePool/ceil-include-dilation", [][]int{{1, 2, 7, 6}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "AveragePool", graph.Attrs{"kernel_shape": []int64{2, 3}, "strides": []int64{2, 2}, "pads": []int64{0, 1, 1, 0},
			"ceil_mode": int64(1), "count_include_pad": int64(1), "dilations": []int64{2, 1}}, x[0])
	}},
	{"AveragePool/1d-same-lower", [][]int{{2, 3, 7}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "AveragePool", graph.Attrs{"kernel_shape": []int64{3}, "strides": []int64{2}, "auto_pad": "SAME_LOWER"}, x[0])
	}},
	{"AveragePool/3d-same-upper-include", [][]int{{1, 2, 4, 3, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "AveragePool", graph.Attrs{"kernel_shape": []int64{2, 2, 3}, "strides": []int64{1, 2, 2}, "auto_pad": "SAME_UPPER",
			"count_include_pad": int64(1)}, x[0])
	}},
	{"GlobalAveragePool/1d", [][]int{{2, 3, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "GlobalAveragePool", nil, x[0])
	}},
	{"Pad/edge-crop", [][]int{{3, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Pad", graph.Attrs{"mode": "edge"}, x[0], ci(g, -1, 2, 1, -2))
	}},
	{"BatchNormalization/2d", [][]int{{5, 3}, {3}, {3}, {3}, {3}}, 0.5, 1.5, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "BatchNormalization", nil, x[0], x[1], x[2], x[3], x[4])
	}},
	{"BatchNormalization/3d", [][]int{{2, 4, 3}, {4}, {4}, {4}, {4}}, 0.5, 1.5, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "BatchNormalization", graph.Attrs{"epsilon": float32(0.1)}, x[0], x[1], x[2], x[3], x[4])
	}},
	{"BatchNormalization", [][]int{{2, 3, 4, 2}, {3}, {3}, {3}, {3}}, 0.5, 1.5, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "BatchNormalization", graph.Attrs{"epsilon": float32(1e-3)}, x[0], x[1], x[2], x[3], x[4])
	}},
	{"ScatterND/none-slices-negative", [][]int{{4, 3}, {2, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ScatterND", nil, x[0], g.Const("idx", graph.I64([]int{2, 1}, []int64{1, -1})), x[1])
	}},
	{"ScatterND/add-repeated", [][]int{{3, 4}, {3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ScatterND", graph.Attrs{"reduction": "add"}, x[0], g.Const("idx", graph.I64([]int{3, 2}, []int64{0, 1, 2, 3, 0, 1})), x[1])
	}},
	{"ScatterND/mul-repeated", [][]int{{3, 4}, {3}}, 0.5, 1.5, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ScatterND", graph.Attrs{"reduction": "mul"}, x[0], g.Const("idx", graph.I64([]int{3, 2}, []int64{0, 1, 2, 3, 0, 1})), x[1])
	}},
	{"ScatterND/max-repeated", [][]int{{2, 2, 3}, {3, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ScatterND", graph.Attrs{"reduction": "max"}, x[0], g.Const("idx", graph.I64([]int{3, 2}, []int64{0, 1, 1, 0, 0, 1})), x[1])
	}},
	{"ScatterND/min-repeated", [][]int{{2, 2, 3}, {3, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "ScatterND", graph.Attrs{"reduction": "min"}, x[0], g.Const("idx", graph.I64([]int{3, 2}, []int64{0, 1, 1, 0, 0, 1})), x[1])
	}},
	{"Reshape", [][]int{{2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Reshape", nil, x[0], ci(g, 0, -1, 2))
	}},
	{"Flatten", [][]int{{2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Flatten", graph.Attrs{"axis": int64(2)}, x[0])
	}},
	{"Squeeze", [][]int{{2, 1, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Squeeze", nil, x[0], ci(g, 1)) }},
	{"Unsqueeze", [][]int{{2, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Unsqueeze", nil, x[0], ci(g, 0, -1))
	}},
	{"Transpose", [][]int{{2, 3, 4}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Transpose", graph.Attrs{"perm": []int64{2, 0, 1}}, x[0])
	}},
	{"Concat", [][]int{{2, 3}, {2, 2}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Concat", graph.Attrs{"axis": int64(-1)}, x[0], x[1], x[0])
	}},
	{"Split/one-unused", [][]int{{2, 6}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		n := g.AddNode("Split", "split", []*graph.Value{x[0], ci(g, 1, 2, 3)}, graph.Attrs{"axis": int64(1), "num_outputs": int64(3)}, "a", "b", "c")
		return op(g, "Add", nil, op(g, "Mul", nil, n.Outputs[0], cf(g, 3)), n.Outputs[2])
	}},
	{"Slice/steps", [][]int{{4, 7}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Slice", nil, x[0], ci(g, 1, -1), ci(g, 4, 0), ci(g, 0, 1), ci(g, 1, -2))
	}},
	{"Expand", [][]int{{1, 3, 1}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Expand", nil, x[0], ci(g, 2, 3, 4)) }},
	{"Tile", [][]int{{2, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Tile", nil, x[0], ci(g, 2, 2)) }},
	{"Gather/axis1-negative-repeat", [][]int{{2, 4, 3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		idx := g.Const("idx", graph.I64([]int{2, 2}, []int64{0, -1, 2, 0}))
		return op(g, "Gather", graph.Attrs{"axis": int64(1)}, x[0], idx)
	}},
	{"Gather/scalar-index", [][]int{{3, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Gather", graph.Attrs{"axis": int64(0)}, x[0], g.Const("i", graph.I64(nil, []int64{1})))
	}},
	{"Gemm/plain-bias", [][]int{{3, 4}, {4, 5}, {5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Gemm", graph.Attrs{"alpha": float32(1.5), "beta": float32(0.5)}, x[0], x[1], x[2])
	}},
	{"Gemm/transB", [][]int{{3, 4}, {5, 4}, {3, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Gemm", graph.Attrs{"transB": int64(1)}, x[0], x[1], x[2])
	}},
	{"Gemm/transA", [][]int{{4, 3}, {4, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Gemm", graph.Attrs{"transA": int64(1), "alpha": float32(0.7)}, x[0], x[1])
	}},
	{"Gemm/transA-transB", [][]int{{4, 3}, {5, 4}, {1, 5}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Gemm", graph.Attrs{"transA": int64(1), "transB": int64(1)}, x[0], x[1], x[2])
	}},
	{"UsedTwice", [][]int{{3}}, -1, 1, func(g *graph.Graph, x []*graph.Value) *graph.Value {
		return op(g, "Mul", nil, op(g, "Tanh", nil, x[0]), op(g, "Exp", nil, x[0]))
	}},
}

func randTensor(r *rand.Rand, shape []int, lo, hi float32) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = lo + (hi-lo)*r.Float32()
	}
	return t
}

// checkGradients compares the compiled gradient of L = sum(out * R), R random,
// with central differences of the float32 forward, L accumulated in float64.
// Argued tolerance: with h = 1e-2, the truncation error is O(h^2) ~ 1e-4 for
// these smooth functions, and float32 rounding of the outputs (6e-8 relative)
// contributes 6e-8 * sum|out R| / 2h, a few 1e-5 for these sizes; so 2e-3 of
// the largest gradient entry separates a wrong rule from noise.
func checkGradients(t *testing.T, shapes [][]int, lo, hi float32, build func(g *graph.Graph, x []*graph.Value) *graph.Value, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	g := graph.New()
	var xs []*graph.Value
	for i, s := range shapes {
		xs = append(xs, g.AddInput(fmt.Sprintf("x%d", i), graph.Float32, graph.StaticShape(s...)))
	}
	out := build(g, xs)
	g.Outputs = []*graph.Value{out}
	fwd, err := Compile(g, Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	outShape := fwd.Outputs[0].StaticShape()
	R := randTensor(r, outShape, -1, 1)
	// Build the loss on a copy so the forward program stays as it is.
	gg, m := cloneWithMap(g)
	o := m[out]
	loss := gg.Op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, gg.Op("Mul", nil, o, gg.Const("R", R)))
	var wrt []*graph.Value
	for _, x := range xs {
		wrt = append(wrt, m[x])
	}
	bwd, err := Compile(gg, Options{Verify: true, Grad: &GradSpec{Loss: loss, Wrt: wrt}})
	if err != nil {
		t.Fatal(err)
	}
	// Inputs are random permutations of evenly spaced values with random
	// offsets, redrawn until no two values (across all inputs) are within 2.5h:
	// max, min and kinks then stay put under the probe.
	const h = 1e-2
	inputs := make([]*graph.Tensor, len(xs))
	for try := 0; ; try++ {
		var all []float32
		for i, s := range shapes {
			inputs[i] = graph.NewTensor(graph.Float32, s)
			n := len(inputs[i].F)
			off := r.Float32()
			for j, p := range r.Perm(n) {
				v := lo + (hi-lo)*(float32(p)+off)/float32(n)
				inputs[i].F[j] = v
				all = append(all, v)
			}
		}
		if separated(all, 2.5*h) || try > 1000 {
			break
		}
	}
	if _, err := bwd.Run(inputs...); err != nil {
		t.Fatal(err)
	}
	f := func() float64 {
		outs, err := fwd.Run(inputs...)
		if err != nil {
			t.Fatal(err)
		}
		s := 0.0
		for i, v := range outs[0].F {
			s += float64(v) * float64(R.F[i])
		}
		return s
	}
	for i, x := range wrt {
		grad := bwd.Grad(x).Clone()
		scale := 1e-3
		for _, v := range grad.F {
			scale = max(scale, math.Abs(float64(v)))
		}
		for j := range inputs[i].F {
			orig := inputs[i].F[j]
			inputs[i].F[j] = orig + h
			fp := f()
			inputs[i].F[j] = orig - h
			fm := f()
			inputs[i].F[j] = orig
			fd := (fp - fm) / (2 * h)
			if d := math.Abs(fd - float64(grad.F[j])); d > 2e-3*scale {
				t.Fatalf("input %d element %d: gradient %g, central difference %g (|diff| %g > %g)", i, j, grad.F[j], fd, d, 2e-3*scale)
			}
		}
	}
}

func TestGradRules(t *testing.T) {
	for i, c := range gradCases {
		t.Run(c.name, func(t *testing.T) { checkGradients(t, c.shapes, c.lo, c.hi, c.build, uint64(i)) })
	}
}

// Every differentiable operator has a rule, and every rule is exercised above.
func TestGradRulesCovered(t *testing.T) {
	tested := map[string]bool{}
	for _, c := range gradCases {
		g := graph.New()
		var xs []*graph.Value
		for i, s := range c.shapes {
			xs = append(xs, g.AddInput(fmt.Sprintf("x%d", i), graph.Float32, graph.StaticShape(s...)))
		}
		c.build(g, xs)
		for _, n := range g.Nodes {
			tested[n.Op] = true
		}
	}
	for op, d := range defs {
		if d.grad != nil && !tested[op] {
			t.Errorf("gradient rule of %s has no finite-difference case", op)
		}
	}
}

func separated(v []float32, d float32) bool {
	for i := range v {
		for j := i + 1; j < len(v); j++ {
			if a := v[i] - v[j]; a < d && a > -d {
				return false
			}
		}
	}
	return true
}

// A program that wants only the input gradient of a LayerNorm skips the
// scale and bias sums, and its dx is the full program's, bit for bit, on
// any number of cores (its rows are split over all of them, more rows
// than one core takes).
func TestLayerNormInputGradOnly(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	shape := []int{8, 60, 24}
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(shape...))
	s := g.AddInput("s", graph.Float32, graph.StaticShape(24))
	b := g.AddInput("b", graph.Float32, graph.StaticShape(24))
	y := op(g, "LayerNormalization", graph.Attrs{"axis": int64(-1), "epsilon": float32(1e-5)}, x, s, b)
	r := rand.New(rand.NewPCG(3, 4))
	loss := op(g, "ReduceSum", graph.Attrs{"keepdims": int64(0)}, op(g, "Mul", nil, y, g.Const("R", randTensor(r, shape, -1, 1))))
	g.Outputs = []*graph.Value{loss}
	ins := []*graph.Tensor{randTensor(r, shape, -2, 3), randTensor(r, []int{24}, 0.5, 1.5), randTensor(r, []int{24}, -1, 1)}
	dx := func(wrt []*graph.Value, procs int) (*graph.Tensor, *Program) {
		runtime.GOMAXPROCS(procs)
		p, err := Compile(g, Options{Verify: true, Grad: &GradSpec{Loss: loss, Wrt: wrt}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Run(ins...); err != nil {
			t.Fatal(err)
		}
		return p.Grad(x).Clone(), p
	}
	all, _ := dx([]*graph.Value{x, s, b}, 1)
	for _, procs := range []int{1, 2, 3, 8} {
		only, p := dx([]*graph.Value{x}, procs)
		skipped := false
		for _, n := range p.Graph.Nodes {
			if n.Op == "LayerNormGrad" && n.Attrs.Int("param_grads", 1) == 0 {
				skipped = true
			}
		}
		if !skipped {
			t.Error("the input-only program still computes the scale and bias gradients")
		}
		for i := range all.F {
			if math.Float32bits(only.F[i]) != math.Float32bits(all.F[i]) {
				t.Fatalf("GOMAXPROCS %d: dx[%d]: %g input-only, %g with the parameters", procs, i, only.F[i], all.F[i])
			}
		}
	}
}
