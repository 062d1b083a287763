package compile

import (
	"math"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// Operators over tensors with a zero-size dim (which ONNX allows: a slice
// past the end, an empty batch) compile and run, and give the spec's shapes
// and values (a sum over nothing is 0, a product with inner size 0 is 0).
func TestEmptyTensors(t *testing.T) {
	type out struct {
		shape []int
		fill  float64 // every element, for the outputs that have some
	}
	f := func(shape ...int) out { return out{shape: shape} }
	cases := []struct {
		name   string
		shapes [][]int // float inputs
		build  func(g *graph.Graph, x []*graph.Value) *graph.Value
		want   out
	}{
		{"Exp", [][]int{{0, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Exp", nil, x[0]) }, f(0, 3)},
		{"Gelu", [][]int{{2, 0}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Gelu", graph.Attrs{"approximate": "tanh"}, x[0])
		}, f(2, 0)},
		{"Clip", [][]int{{0}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Clip", nil, x[0], cf(g, 0), cf(g, 1))
		}, f(0)},
		{"Add/broadcast", [][]int{{0, 3}, {3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Add", nil, x[0], x[1]) }, f(0, 3)},
		{"Mul/broadcast-to-empty", [][]int{{1, 3}, {0, 1}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Mul", nil, x[0], x[1]) }, f(0, 3)},
		{"Pow", [][]int{{3, 0}, {3, 0}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Pow", nil, x[0], x[1]) }, f(3, 0)},
		{"Where", [][]int{{0, 2}, {0, 2}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Where", nil, op(g, "Less", nil, x[0], x[1]), x[0], x[1])
		}, f(0, 2)},
		{"Max/variadic", [][]int{{0, 2}, {2}, {1, 2}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Max", nil, x[0], x[1], x[2]) }, f(0, 2)},
		{"Transpose", [][]int{{2, 0, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Transpose", graph.Attrs{"perm": []int64{2, 1, 0}}, x[0])
		}, f(3, 0, 2)},
		{"Slice/past-the-end", [][]int{{4, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Slice", nil, x[0], ci(g, 10), ci(g, 20), ci(g, 0))
		}, f(0, 3)},
		{"Slice/inner", [][]int{{4, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Slice", nil, x[0], ci(g, 2), ci(g, 2), ci(g, 1))
		}, f(4, 0)},
		{"Slice/of-empty", [][]int{{0, 5}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Slice", nil, x[0], ci(g, 1), ci(g, 3), ci(g, 1))
		}, f(0, 2)},
		{"Expand", [][]int{{1, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Expand", nil, x[0], ci(g, 0, 3)) }, f(0, 3)},
		{"Tile", [][]int{{2, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "Tile", nil, x[0], ci(g, 0, 2)) }, f(0, 6)},
		{"Concat/with-empty", [][]int{{0, 3}, {2, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Concat", graph.Attrs{"axis": int64(0)}, x[0], x[1], x[0])
		}, out{[]int{2, 3}, math.NaN()}},
		{"Split/empty-part", [][]int{{2, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			n := g.AddNode("Split", "split", []*graph.Value{x[0], ci(g, 0, 3)}, graph.Attrs{"axis": int64(1)}, "a", "b")
			return n.Outputs[0]
		}, f(2, 0)},
		{"Reshape/allowzero", [][]int{{0, 6}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Reshape", graph.Attrs{"allowzero": int64(1)}, x[0], ci(g, 3, 0, 2))
		}, f(3, 0, 2)},
		{"Reshape/copy-zero", [][]int{{0, 6}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Reshape", nil, x[0], ci(g, 0, 3, 2))
		}, f(0, 3, 2)},
		{"MatMul/empty-columns", [][]int{{2, 3}, {3, 0}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }, f(2, 0)},
		{"Gemm/empty-columns-transB", [][]int{{2, 3}, {0, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Gemm", graph.Attrs{"transB": int64(1)}, x[0], x[1])
		}, f(2, 0)},
		{"Gather/empty-indices", [][]int{{4, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Gather", graph.Attrs{"axis": int64(0)}, x[0], g.Const("idx", graph.I64([]int{0}, nil)))
		}, f(0, 3)},
		{"Gather/from-empty-rows", [][]int{{2, 0}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Gather", graph.Attrs{"axis": int64(0)}, x[0], g.Const("idx", graph.I64([]int{3}, []int64{1, 0, 1})))
		}, f(3, 0)},
		{"ReduceSum/over-empty", [][]int{{0, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "ReduceSum", graph.Attrs{"keepdims": int64(0)}, x[0], ci(g, 0))
		}, out{[]int{3}, 0}},
		{"ReduceMax/keep-empty", [][]int{{0, 3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "ReduceMax", graph.Attrs{"keepdims": int64(1)}, x[0], ci(g, 1))
		}, f(0, 1)},
		{"Softmax", [][]int{{0, 4}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Softmax", graph.Attrs{"axis": int64(-1)}, x[0])
		}, f(0, 4)},
		{"LayerNormalization", [][]int{{0, 4}, {4}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "LayerNormalization", graph.Attrs{"axis": int64(-1), "epsilon": float32(1e-5)}, x[0], x[1])
		}, f(0, 4)},
		{"MatMul/empty-rows", [][]int{{0, 3}, {3, 4}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }, f(0, 4)},
		{"MatMul/empty-inner", [][]int{{2, 0}, {0, 4}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }, out{[]int{2, 4}, 0}},
		{"MatMul/empty-batch", [][]int{{0, 2, 3}, {3, 4}}, func(g *graph.Graph, x []*graph.Value) *graph.Value { return op(g, "MatMul", nil, x[0], x[1]) }, f(0, 2, 4)},
		{"Gemm/empty-inner-bias", [][]int{{2, 0}, {0, 3}, {3}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Gemm", nil, x[0], x[1], op(g, "Mul", nil, op(g, "Sub", nil, x[2], x[2]), cf(g, 1)))
		}, out{[]int{2, 3}, 0}},
		{"Conv/empty-batch", [][]int{{0, 2, 4, 4}, {3, 2, 2, 2}}, func(g *graph.Graph, x []*graph.Value) *graph.Value {
			return op(g, "Conv", nil, x[0], x[1])
		}, f(0, 3, 3, 3)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := graph.New()
			var xs []*graph.Value
			var ins []*graph.Tensor
			for i, s := range c.shapes {
				xs = append(xs, g.AddInput(string(rune('a'+i)), graph.Float32, graph.StaticShape(s...)))
				x := graph.NewTensor(graph.Float32, s)
				for j := range x.F {
					x.F[j] = float32(j%5) - 2
				}
				ins = append(ins, x)
			}
			y := c.build(g, xs)
			g.Outputs = []*graph.Value{y}
			p, err := Compile(g, Options{Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := p.Run(ins...)
			if err != nil {
				t.Fatal(err)
			}
			if !sameShape(outs[0].Shape, c.want.shape) {
				t.Fatalf("shape %v, want %v", outs[0].Shape, c.want.shape)
			}
			if math.IsNaN(c.want.fill) {
				return
			}
			for i, v := range outs[0].F {
				if float64(v) != c.want.fill {
					t.Fatalf("element %d is %g, want %g", i, v, c.want.fill)
				}
			}
		})
	}
}

// Gradients flow through empty pieces: the empty slice's contribution is
// nothing, the rest is the sum's.
func TestEmptyTensorGradients(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(4, 3))
	empty := op(g, "Slice", nil, x, ci(g, 10), ci(g, 20), ci(g, 0))
	e := op(g, "Mul", nil, op(g, "Exp", nil, empty), op(g, "Transpose", nil, op(g, "Transpose", nil, empty)))
	y := op(g, "Concat", graph.Attrs{"axis": int64(0)}, e, x, op(g, "Expand", nil, op(g, "ReduceSum", graph.Attrs{"keepdims": int64(1)}, e, ci(g, 0)), ci(g, 0, 3)))
	loss := op(g, "ReduceSum", graph.Attrs{"keepdims": int64(0)}, y)
	g.Outputs = []*graph.Value{loss}
	p, err := Compile(g, Options{Verify: true, Grad: &GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	in := graph.NewTensor(graph.Float32, []int{4, 3})
	if _, err := p.Run(in); err != nil {
		t.Fatal(err)
	}
	for i, v := range p.Grad(x).F {
		if v != 1 {
			t.Fatalf("dx[%d] = %g, want 1", i, v)
		}
	}
}
