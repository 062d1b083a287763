package onnximport_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/compile"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/onnx"
)

// FuzzImport feeds arbitrary bytes to the importer, the layer recognizer and
// the compiler (batch 1): they may refuse a file, never panic. The seeds are the
// fixture and shared models whole, cut short, and with a few bytes flipped, and
// tiny one-operator models whose mutations reach every converter quickly.
//
//	go test ./import -run '^$' -fuzz FuzzImport -fuzztime 60s -fuzzminimizetime 1s
//
// (Minimizing a new input of a few megabytes takes the default 60 s, during
// which no execs are counted: keep -fuzzminimizetime short.)
func FuzzImport(f *testing.F) {
	var files []string
	if fs, _ := filepath.Glob(testutil.Fixture("models", "*.onnx")); len(fs) > 0 {
		files = append(files, fs...)
	}
	if dir := testutil.SharedModels(); dir != "" {
		fs, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
		files = append(files, fs...)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		for _, frac := range []int{2, 3, 10, 100} {
			f.Add(data[:len(data)/frac])
		}
		f.Add(data[:64])
		for i := 0; i < 4; i++ {
			b := append([]byte{}, data...)
			for j := 0; j < 1+i; j++ {
				b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
			}
			f.Add(b)
		}
	}
	for _, m := range tinyModels() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("\x08\x07\x12\x00"))
	dir := f.TempDir() // external data is looked up in an empty folder
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := onnximport.Decode(data)
		if err != nil {
			return
		}
		im, err := onnximport.Import(m, dir)
		if err != nil {
			return
		}
		if _, err := layers.Recognize(im.Graph); err != nil {
			t.Fatalf("Recognize failed on an imported graph: %v", err)
		}
		// a few bytes can ask for a tensor of gigabytes legitimately (Tile,
		// Expand, ConstantOfShape): the fuzzer keeps tensors small
		compile.Compile(im.Graph, compile.Options{Batch: 1, MaxElements: 1 << 20})
	})
}

// The tiny models run (they are valid), so the seeds start inside every converter.
func TestTinyModelsRun(t *testing.T) {
	for _, m := range tinyModels() {
		b, _ := proto.Marshal(m)
		pm, err := onnximport.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		name := m.GetGraph().GetName()
		im, err := onnximport.Import(pm, t.TempDir())
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := compile.Compile(im.Graph, compile.Options{Batch: 2}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// tinyModels are one-operator models (with the constants they need) on an
// input x of shape [batch,2,4].
func tinyModels() []*onnx.ModelProto {
	type node struct {
		op    string
		in    []string
		attrs []*onnx.AttributeProto
		out   []string
	}
	ints := func(name string, v ...int64) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: proto.String(name), Type: onnx.AttributeProto_INTS.Enum(), Ints: v}
	}
	i1 := func(name string, v int64) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: proto.String(name), Type: onnx.AttributeProto_INT.Enum(), I: proto.Int64(v)}
	}
	i64 := func(name string, dims []int64, v ...int64) *onnx.TensorProto {
		return &onnx.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnx.TensorProto_INT64)), Dims: dims, Int64Data: v}
	}
	f32 := func(name string, dims ...int64) *onnx.TensorProto {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i%7) * 0.25
		}
		return &onnx.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnx.TensorProto_FLOAT)), Dims: dims, FloatData: v}
	}
	vec := func(name string, v ...int64) *onnx.TensorProto { return i64(name, []int64{int64(len(v))}, v...) }
	cases := []struct {
		name  string
		opset int64
		init  []*onnx.TensorProto
		nodes []node
	}{
		{"reshape", 17, []*onnx.TensorProto{vec("s", -1, 8)}, []node{{"Reshape", []string{"x", "s"}, nil, nil}}},
		{"expand", 17, []*onnx.TensorProto{vec("s", 2, 1, 1)}, []node{{"Expand", []string{"x", "s"}, nil, nil}}},
		{"slice", 17, []*onnx.TensorProto{vec("a", 0), vec("b", 3), vec("ax", 2), vec("st", 2)}, []node{{"Slice", []string{"x", "a", "b", "ax", "st"}, nil, nil}}},
		{"gather", 17, []*onnx.TensorProto{vec("i", 1, 0)}, []node{{"Gather", []string{"x", "i"}, []*onnx.AttributeProto{i1("axis", 1)}, nil}}},
		{"concat", 17, nil, []node{{"Concat", []string{"x", "x"}, []*onnx.AttributeProto{i1("axis", -1)}, nil}}},
		{"split", 17, []*onnx.TensorProto{vec("s", 1, 3)}, []node{{"Split", []string{"x", "s"}, []*onnx.AttributeProto{i1("axis", 2)}, []string{"y", "z"}}}},
		{"squeeze", 17, []*onnx.TensorProto{vec("a", 0)}, []node{{"Unsqueeze", []string{"x", "a"}, nil, []string{"u"}}, {"Squeeze", []string{"u", "a"}, nil, nil}}},
		{"transpose", 17, nil, []node{{"Transpose", []string{"x"}, []*onnx.AttributeProto{ints("perm", 0, 2, 1)}, nil}}},
		{"tile", 17, []*onnx.TensorProto{vec("r", 1, 2, 1)}, []node{{"Tile", []string{"x", "r"}, nil, nil}}},
		{"matmul", 17, []*onnx.TensorProto{f32("w", 4, 3)}, []node{{"MatMul", []string{"x", "w"}, nil, nil}}},
		{"gemm", 17, []*onnx.TensorProto{vec("s", -1, 8), f32("w", 5, 8), f32("c", 5)}, []node{{"Reshape", []string{"x", "s"}, nil, []string{"r"}}, {"Gemm", []string{"r", "w", "c"}, []*onnx.AttributeProto{i1("transB", 1)}, nil}}},
		{"conv", 17, []*onnx.TensorProto{vec("s", -1, 1, 2, 4), f32("w", 3, 1, 2, 2)}, []node{{"Reshape", []string{"x", "s"}, nil, []string{"r"}}, {"Conv", []string{"r", "w"}, []*onnx.AttributeProto{ints("strides", 2, 2)}, nil}}},
		{"softmax", 12, nil, []node{{"Softmax", []string{"x"}, []*onnx.AttributeProto{i1("axis", 1)}, nil}}},
		{"layernorm", 17, []*onnx.TensorProto{f32("g", 4), f32("b", 4)}, []node{{"LayerNormalization", []string{"x", "g", "b"}, nil, nil}}},
		{"reducemean", 17, nil, []node{{"ReduceMean", []string{"x"}, []*onnx.AttributeProto{ints("axes", -1)}, nil}}},
		{"reducemean18", 18, []*onnx.TensorProto{vec("a", 1)}, []node{{"ReduceMean", []string{"x", "a"}, nil, nil}}},
		{"where", 17, []*onnx.TensorProto{f32("z")}, []node{{"Greater", []string{"x", "z"}, nil, []string{"m"}}, {"Where", []string{"m", "x", "z"}, nil, nil}}},
		{"gelu", 20, nil, []node{{"Gelu", []string{"x"}, nil, nil}}},
		{"erf", 14, []*onnx.TensorProto{f32("p")}, []node{{"Pow", []string{"x", "p"}, nil, []string{"q"}}, {"Erf", []string{"q"}, nil, []string{"e"}}, {"Div", []string{"e", "x"}, nil, nil}}},
		{"shapeops", 14, []*onnx.TensorProto{vec("i", 0), vec("a", 0), vec("rest", 8)}, []node{
			{"Shape", []string{"x"}, nil, []string{"sh"}},
			{"Gather", []string{"sh", "i"}, nil, []string{"b"}},
			{"Concat", []string{"b", "rest"}, []*onnx.AttributeProto{i1("axis", 0)}, []string{"s"}},
			{"Reshape", []string{"x", "s"}, nil, nil}}},
		{"constantofshape", 17, []*onnx.TensorProto{vec("s", 2, 4)}, []node{{"ConstantOfShape", []string{"s"}, nil, []string{"c"}}, {"Add", []string{"x", "c"}, nil, nil}}},
		{"range", 17, []*onnx.TensorProto{i64("a", nil, 0), i64("b", nil, 4), i64("d", nil, 1)}, []node{{"Range", []string{"a", "b", "d"}, nil, []string{"r"}}, {"Cast", []string{"r"}, []*onnx.AttributeProto{i1("to", int64(onnx.TensorProto_FLOAT))}, []string{"c"}}, {"Add", []string{"x", "c"}, nil, nil}}},
		{"layernorm-stats", 17, []*onnx.TensorProto{f32("g", 4)}, []node{
			{"LayerNormalization", []string{"x", "g"}, nil, []string{"l", "m", "inv"}},
			{"Add", []string{"l", "m"}, nil, []string{"t"}}, {"Mul", []string{"t", "inv"}, nil, nil}}},
		{"dropout-mask", 13, nil, []node{
			{"Dropout", []string{"x"}, nil, []string{"d", "mask"}},
			{"Cast", []string{"mask"}, []*onnx.AttributeProto{i1("to", int64(onnx.TensorProto_FLOAT))}, []string{"mf"}},
			{"Mul", []string{"d", "mf"}, nil, nil}}},
		{"pow-int-exponent", 15, []*onnx.TensorProto{vec("e", 2, 3, 1, 0)}, []node{{"Pow", []string{"x", "e"}, nil, nil}}},
		{"clip-int", 13, []*onnx.TensorProto{i64("lo", nil, 0), i64("hi", nil, 1)}, []node{
			{"Cast", []string{"x"}, []*onnx.AttributeProto{i1("to", int64(onnx.TensorProto_INT8))}, []string{"xi"}},
			{"Clip", []string{"xi", "lo", "hi"}, nil, []string{"c"}},
			{"Cast", []string{"c"}, []*onnx.AttributeProto{i1("to", int64(onnx.TensorProto_FLOAT))}, nil}}},
		{"flatten-clip", 10, nil, []node{{"Flatten", []string{"x"}, nil, []string{"fl"}}, {"Clip", []string{"fl"}, nil, nil}}},
	}
	var out []*onnx.ModelProto
	for _, c := range cases {
		g := &onnx.GraphProto{Name: proto.String(c.name), Initializer: c.init}
		dims := []*onnx.TensorShapeProto_Dimension{
			{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
			{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 2}},
			{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 4}},
		}
		g.Input = []*onnx.ValueInfoProto{{Name: proto.String("x"), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: proto.Int32(int32(onnx.TensorProto_FLOAT)), Shape: &onnx.TensorShapeProto{Dim: dims}}}}}}
		for i, n := range c.nodes {
			outs := n.out
			if outs == nil {
				outs = []string{"y"}
			}
			g.Node = append(g.Node, &onnx.NodeProto{Name: proto.String(c.name + "_" + n.op + "_" + string(rune('0'+i))),
				OpType: proto.String(n.op), Input: n.in, Output: outs, Attribute: n.attrs})
		}
		g.Output = []*onnx.ValueInfoProto{{Name: proto.String("y")}}
		out = append(out, &onnx.ModelProto{IrVersion: proto.Int64(8), ProducerName: proto.String("hyperat-test"), Graph: g,
			OpsetImport: []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(c.opset)}}})
	}
	return out
}
