package onnximport

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/onnx"
)

// einsumModel is one Einsum node over float inputs of the given shapes.
func einsumModel(eq string, shapes [][]int) *onnx.ModelProto {
	f := int32(onnx.TensorProto_FLOAT)
	vi := func(name string, shape []int) *onnx.ValueInfoProto {
		var dims []*onnx.TensorShapeProto_Dimension
		for _, d := range shape {
			dims = append(dims, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		}
		return &onnx.ValueInfoProto{Name: proto.String(name), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: &f, Shape: &onnx.TensorShapeProto{Dim: dims}}}}}
	}
	var inputs []*onnx.ValueInfoProto
	var names []string
	for i, s := range shapes {
		names = append(names, fmt.Sprintf("x%d", i))
		inputs = append(inputs, vi(names[i], s))
	}
	st := onnx.AttributeProto_STRING
	n := node("Einsum", names, []string{"y"}, &onnx.AttributeProto{Name: proto.String("equation"), Type: &st, S: []byte(eq)})
	return &onnx.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnx.GraphProto{Name: proto.String("g"), Node: []*onnx.NodeProto{n}, Input: inputs,
			Output: []*onnx.ValueInfoProto{{Name: proto.String("y")}}}}
}

// Einsum has no rule of its own: its lowering (Transpose, Unsqueeze,
// Squeeze, ReduceSum, MatMul, Mul) carries the gradient. For each form of
// the lowering, the gradient of sum(y * R) with respect to every operand
// agrees with central differences (exact up to rounding: y is linear in
// each operand).
func TestEinsumGradient(t *testing.T) {
	for i, c := range []struct {
		eq     string
		shapes [][]int
	}{
		{"bhqd,bhkd->bhqk", [][]int{{2, 2, 3, 4}, {2, 2, 5, 4}}}, // attention scores: one MatMul
		{"...ij,...jk->...ik", [][]int{{2, 3, 4}, {1, 4, 2}}},    // an ellipsis, broadcast
		{"ij,jk", [][]int{{3, 4}, {4, 2}}},                       // implicit output
		{"i,j->ij", [][]int{{3}, {4}}},                           // outer product: broadcast Mul
		{"ij->ji", [][]int{{3, 4}}},                              // a transpose
		{"ij,k->i", [][]int{{3, 4}, {2}}},                        // labels summed within one operand
		{"bn,anm,bm->ba", [][]int{{2, 3}, {4, 3, 5}, {2, 5}}},    // a bilinear form, three operands
		{"bij,bij->b", [][]int{{2, 3, 4}, {2, 3, 4}}},            // two labels summed at once
	} {
		t.Run(c.eq, func(t *testing.T) { einsumGradient(t, c.eq, c.shapes, uint64(i)) })
	}
}

func einsumGradient(t *testing.T, eq string, shapes [][]int, seed uint64) {
	m, err := Import(einsumModel(eq, shapes), "")
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := compile.Compile(m.Graph, compile.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	random := func(shape []int) *graph.Tensor {
		x := graph.NewTensor(graph.Float32, shape)
		for i := range x.F {
			x.F[i] = float32(2*rng.Float64() - 1)
		}
		return x
	}
	R := random(fwd.Outputs[0].StaticShape())
	g := m.Graph.Clone()
	loss := g.Op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, g.Op("Mul", nil, g.Outputs[0], g.Const("R", R)))
	bwd, err := compile.Compile(g, compile.Options{Verify: true, Grad: &compile.GradSpec{Loss: loss, Wrt: g.Inputs}})
	if err != nil {
		t.Fatal(err)
	}
	xs := make([]*graph.Tensor, len(shapes))
	for i, s := range shapes {
		xs[i] = random(s)
	}
	if _, err := bwd.Run(xs...); err != nil {
		t.Fatal(err)
	}
	f := func() float64 {
		out, err := fwd.Run(xs...)
		if err != nil {
			t.Fatal(err)
		}
		s := 0.0
		for i, v := range out[0].F {
			s += float64(v) * float64(R.F[i])
		}
		return s
	}
	const h = 1e-2
	for i, in := range g.Inputs {
		grad := bwd.Grad(in)
		scale := 1e-3
		for _, v := range grad.F {
			scale = max(scale, math.Abs(float64(v)))
		}
		for j := range xs[i].F {
			o := xs[i].F[j]
			xs[i].F[j] = o + h
			fp := f()
			xs[i].F[j] = o - h
			fm := f()
			xs[i].F[j] = o
			if fd := (fp - fm) / (2 * h); math.Abs(fd-float64(grad.F[j])) > 2e-3*scale {
				t.Fatalf("operand %d element %d: gradient %g, central difference %g", i, j, grad.F[j], fd)
			}
		}
	}
}
