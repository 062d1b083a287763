package onnximport

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/onnx"
)

// tinyModel is a one-node model around input x [1, 3] (opset 17).
func tinyModel(nodes []*onnx.NodeProto, inits ...*onnx.TensorProto) *onnx.ModelProto {
	f := int32(onnx.TensorProto_FLOAT)
	vi := func(name string) *onnx.ValueInfoProto {
		return &onnx.ValueInfoProto{Name: proto.String(name), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: &f, Shape: &onnx.TensorShapeProto{Dim: []*onnx.TensorShapeProto_Dimension{
				{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 1}},
				{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 3}}}}}}}}
	}
	return &onnx.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnx.GraphProto{Name: proto.String("g"), Node: nodes, Initializer: inits, Input: []*onnx.ValueInfoProto{vi("x")}, Output: []*onnx.ValueInfoProto{vi("y")}}}
}

func node(op string, in, out []string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
	return &onnx.NodeProto{OpType: proto.String(op), Name: proto.String("n_" + op), Input: in, Output: out, Attribute: attrs}
}

func ints(name string, v ...int64) *onnx.AttributeProto {
	t := onnx.AttributeProto_INTS
	return &onnx.AttributeProto{Name: proto.String(name), Type: &t, Ints: v}
}

// Malformed models that once crashed the importer or the compiler now give
// an error naming the problem.
func TestMalformedModelsAreErrors(t *testing.T) {
	f := int32(onnx.TensorProto_FLOAT)
	cases := map[string]struct {
		m    *onnx.ModelProto
		want string
	}{
		"node without input 0": {tinyModel([]*onnx.NodeProto{node("Squeeze", nil, []string{"y"})}), "input 0 is required"},
		"node without output":  {tinyModel([]*onnx.NodeProto{node("Constant", nil, nil), node("Identity", []string{"x"}, []string{"y"})}), "no output"},
		"conv with zero stride": {tinyModel([]*onnx.NodeProto{
			node("Reshape", []string{"x", "s"}, []string{"x4"}),
			node("Conv", []string{"x4", "w"}, []string{"c"}, ints("strides", 0, 0)),
			node("Reshape", []string{"c", "s2"}, []string{"y"})},
			&onnx.TensorProto{Name: proto.String("s"), DataType: proto.Int32(int32(onnx.TensorProto_INT64)), Dims: []int64{4}, Int64Data: []int64{1, 1, 1, 3}},
			&onnx.TensorProto{Name: proto.String("s2"), DataType: proto.Int32(int32(onnx.TensorProto_INT64)), Dims: []int64{2}, Int64Data: []int64{1, 3}},
			&onnx.TensorProto{Name: proto.String("w"), DataType: &f, Dims: []int64{1, 1, 1, 1}, FloatData: []float32{1}}), "must be positive"},
		"huge initializer without data": {tinyModel([]*onnx.NodeProto{node("Add", []string{"x", "w"}, []string{"y"})},
			&onnx.TensorProto{Name: proto.String("w"), DataType: &f, Dims: []int64{131072, 131072}}), "too large"},
		"huge constant of shape": {tinyModel([]*onnx.NodeProto{
			node("ConstantOfShape", []string{"s"}, []string{"big"}),
			node("Add", []string{"big", "x"}, []string{"y"})},
			&onnx.TensorProto{Name: proto.String("s"), DataType: proto.Int32(int32(onnx.TensorProto_INT64)), Dims: []int64{2}, Int64Data: []int64{200000, 200000}}), "limit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			im, err := Import(c.m, ".")
			if err == nil {
				_, err = compile.Compile(im.Graph, compile.Options{Batch: 1})
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
