package export_test

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/export"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/onnx"
)

// siteModel is a small classifier with every kind of reader a LoRA branch
// attaches to:
//
//	x [N,1,2,4] -> Flatten -> h [N,8]
//	Gemm(h, W1 [6,8], transB=1, alpha=0.5)      W1 [out,in]
//	Transpose -> Gemm(·ᵀ, W2 [6,5], transA=1)    W2 [in,out], x read transposed
//	MatMul(·, Transpose(W3 [4,5]))               W3 [out,in] through a Transpose
//
// at IR version 3, where initializers are graph inputs too.
func siteModel(t *testing.T, seed uint64) *onnx.ModelProto {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	init := func(name string, dims ...int64) *onnx.TensorProto {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		tp := &onnx.TensorProto{Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(onnx.TensorProto_FLOAT))}
		for i := int64(0); i < n; i++ {
			tp.FloatData = append(tp.FloatData, float32(rng.NormFloat64()))
		}
		return tp
	}
	vi := func(name string, dims ...any) *onnx.ValueInfoProto {
		s := &onnx.TensorShapeProto{}
		for _, d := range dims {
			switch d := d.(type) {
			case string:
				s.Dim = append(s.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: d}})
			case int:
				s.Dim = append(s.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
			}
		}
		return &onnx.ValueInfoProto{Name: proto.String(name), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: proto.Int32(int32(onnx.TensorProto_FLOAT)), Shape: s}}}}
	}
	attrI := func(name string, v int64) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: proto.String(name), Type: onnx.AttributeProto_INT.Enum(), I: proto.Int64(v)}
	}
	node := func(name, op string, in, out []string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
		return &onnx.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: out, Attribute: attrs}
	}
	inits := []*onnx.TensorProto{init("W1", 6, 8), init("b1", 6), init("W2", 6, 5), init("W3", 4, 5)}
	g := &onnx.GraphProto{
		Name: proto.String("sites"),
		Node: []*onnx.NodeProto{
			node("flatten", "Flatten", []string{"x"}, []string{"h"}, attrI("axis", 1)),
			node("fc1", "Gemm", []string{"h", "W1", "b1"}, []string{"y1"}, attrI("transB", 1),
				&onnx.AttributeProto{Name: proto.String("alpha"), Type: onnx.AttributeProto_FLOAT.Enum(), F: proto.Float32(0.5)}),
			node("t", "Transpose", []string{"y1"}, []string{"y1t"}),
			node("fc2", "Gemm", []string{"y1t", "W2"}, []string{"y2"}, attrI("transA", 1)),
			node("w3t", "Transpose", []string{"W3"}, []string{"W3t"},
				&onnx.AttributeProto{Name: proto.String("perm"), Type: onnx.AttributeProto_INTS.Enum(), Ints: []int64{1, 0}}),
			node("head", "MatMul", []string{"y2", "W3t"}, []string{"logits"}),
		},
		Initializer: inits,
		Input:       []*onnx.ValueInfoProto{vi("x", "N", 1, 2, 4), vi("W1", 6, 8), vi("b1", 6), vi("W2", 6, 5), vi("W3", 4, 5)},
		Output:      []*onnx.ValueInfoProto{vi("logits", "N", 4)},
	}
	return &onnx.ModelProto{IrVersion: proto.Int64(3), ProducerName: proto.String("test"), Graph: g,
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(11)}}}
}

func randMat(rng *rand.Rand, r, c int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, []int{r, c})
	for i := range t.F {
		t.F[i] = float32(rng.NormFloat64())
	}
	return t
}

// Branches after a Gemm with transB and alpha, a Gemm with transA, and a
// MatMul reading its weight through a Transpose equal the merged weights, in
// our forward and in onnxruntime; two branches on one weight add up.
func TestUnmergedSiteKinds(t *testing.T) {
	src := siteModel(t, 1)
	rng := rand.New(rand.NewPCG(2, 2))
	branches := []lora.Layer{
		{Name: "fc1", Key: layers.WeightKey{Init: "W1"}, Transposed: true, A: randMat(rng, 2, 8), B: randMat(rng, 6, 2), Scale: 0.7},
		{Name: "fc2", Key: layers.WeightKey{Init: "W2"}, A: randMat(rng, 3, 6), B: randMat(rng, 5, 3), Scale: 2},
		{Name: "head", Key: layers.WeightKey{Init: "W3"}, Transposed: true, A: randMat(rng, 1, 5), B: randMat(rng, 4, 1), Scale: 1},
		{Name: "head.second", Key: layers.WeightKey{Init: "W3"}, Transposed: true, A: randMat(rng, 2, 5), B: randMat(rng, 4, 2), Scale: 0.25},
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "lora.onnx")
	r, err := export.Unmerged(src, dir, nil, branches, out, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxDiff > 1e-4 || r.AddedInits != 2*3+2 { // A and B per weight, a scale for fc1 and fc2 (head folds its two scales into B)
		t.Errorf("report %+v", r)
	}
	got, _ := exporttest.Decode(t, out)
	if len(got.Graph.Input) != len(src.Graph.Input)+r.AddedInits {
		t.Errorf("IR 3: the new initializers are not graph inputs")
	}
	m := exporttest.Imported(t, src, dir)
	w, err := export.MergeBranches(m.Graph, nil, branches)
	if err != nil {
		t.Fatal(err)
	}
	c := exporttest.LoadClassifier(t, out)
	x := exporttest.Pixels(c, 3, 1)
	want := exporttest.Logits(t, exporttest.Reference(t, m, w), x)
	if d := testutil.MaxAbsDiff(exporttest.Logits(t, c, x).F, want.F); d > 1e-4 {
		t.Errorf("our logits differ from the merged model's by %g", d)
	}
	if d := testutil.MaxAbsDiff(exporttest.Logits(t, c, x).F, exporttest.Logits(t, exporttest.Reference(t, m, nil), x).F); d < 1e-2 {
		t.Errorf("the branches change nothing (%g)", d)
	}
	if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, want.F); d > 1e-4 {
		t.Errorf("onnxruntime differs from the merged model by %g", d)
	}
	// merging by hand: W2 [in,out] += 2·(B·A)ᵀ
	w2 := m.Graph.ParamByName("W2").Const.Clone()
	br := branches[1]
	for o := 0; o < 5; o++ {
		for j := 0; j < 6; j++ {
			var s float32
			for k := 0; k < 3; k++ {
				s += br.B.F[o*3+k] * br.A.F[k*6+j]
			}
			w2.F[j*5+o] += 2 * s
		}
	}
	if d := testutil.MaxAbsDiff(w2.F, w[layers.WeightKey{Init: "W2"}].F); d > 1e-5 {
		t.Errorf("MergeBranches on [in,out] differs from the hand merge by %g", d)
	}
}

// Readers a branch cannot follow, and layouts that do not fit, are refused.
func TestUnmergedRefusals(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		edit func(m *onnx.ModelProto)
		br   lora.Layer
		want string
	}{
		{"layout", nil, lora.Layer{Name: "fc1", Key: layers.WeightKey{Init: "W1"}, A: randMat(rng, 2, 6), B: randMat(rng, 8, 2), Scale: 1}, "[out,in]"},
		{"shape", nil, lora.Layer{Name: "fc1", Key: layers.WeightKey{Init: "W1"}, Transposed: true, A: randMat(rng, 2, 7), B: randMat(rng, 6, 2), Scale: 1}, "W1"},
		{"factors", nil, lora.Layer{Name: "fc1", Key: layers.WeightKey{Init: "W1"}, Transposed: true, A: randMat(rng, 2, 8), B: randMat(rng, 6, 3), Scale: 1}, "A [r,in]"},
		{"missing", nil, lora.Layer{Name: "x", Key: layers.WeightKey{Init: "W9"}, A: randMat(rng, 2, 8), B: randMat(rng, 6, 2), Scale: 1}, "W9"},
		{"other reader", func(m *onnx.ModelProto) {
			m.Graph.Node = append(m.Graph.Node, &onnx.NodeProto{Name: proto.String("peek"), OpType: proto.String("Identity"),
				Input: []string{"W1"}, Output: []string{"w1copy"}})
		}, lora.Layer{Name: "fc1", Key: layers.WeightKey{Init: "W1"}, Transposed: true, A: randMat(rng, 2, 8), B: randMat(rng, 6, 2), Scale: 1}, "Identity"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := siteModel(t, 1)
			if c.edit != nil {
				c.edit(src)
			}
			out := filepath.Join(dir, c.name+".onnx")
			_, err := export.Unmerged(src, dir, nil, []lora.Layer{c.br}, out, export.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v, want an error naming %q", err, c.want)
			}
		})
	}
	// a weight with both a branch and a new value
	src := siteModel(t, 1)
	w := map[layers.WeightKey]*graph.Tensor{{Init: "W1"}: randMat(rng, 6, 8)}
	br := lora.Layer{Name: "fc1", Key: layers.WeightKey{Init: "W1"}, Transposed: true, A: randMat(rng, 2, 8), B: randMat(rng, 6, 2), Scale: 1}
	if _, err := export.Unmerged(src, dir, w, []lora.Layer{br}, filepath.Join(dir, "both.onnx"), export.Options{}); err == nil {
		t.Errorf("a weight with a branch and a new value was accepted")
	}
}

// A LoRA keyed by one reader of a shared initializer is added after that
// reader's product alone; the other reader keeps the pretrained weight, as
// the tuned model with a per-reader copy does.
func TestUnmergedPerReaderKey(t *testing.T) {
	src := siteModel(t, 1)
	attrs := src.Graph.Node[1].Attribute // fc1's: transB=1, alpha=0.5
	second := &onnx.NodeProto{Name: proto.String("fc1b"), OpType: proto.String("Gemm"), Input: []string{"h", "W1", "b1"}, Output: []string{"y1b"}, Attribute: attrs}
	sum := &onnx.NodeProto{Name: proto.String("sum"), OpType: proto.String("Add"), Input: []string{"y1", "y1b"}, Output: []string{"y1s"}}
	nodes := append([]*onnx.NodeProto{}, src.Graph.Node[:2]...)
	nodes = append(nodes, second, sum)
	nodes = append(nodes, src.Graph.Node[2:]...)
	nodes[4].Input[0] = "y1s" // the Transpose reads the sum
	src.Graph.Node = nodes
	rng := rand.New(rand.NewPCG(4, 4))
	br := lora.Layer{Name: "fc1b", Key: layers.WeightKey{Init: "W1", Reader: "y1b"}, Transposed: true,
		A: randMat(rng, 2, 8), B: randMat(rng, 6, 2), Scale: 0.7}
	dir := t.TempDir()
	out := filepath.Join(dir, "lora.onnx")
	r, err := export.Unmerged(src, dir, nil, []lora.Layer{br}, out, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxDiff > 1e-4 || r.AddedNodes != 6 || r.AddedInits != 3 {
		t.Errorf("report %+v: want one branch of 6 nodes", r)
	}
	got, _ := exporttest.Decode(t, out)
	for _, n := range got.Graph.Node {
		if n.GetName() == "fc1" && n.Output[0] != "y1" || n.GetName() == "fc1b" && n.Output[0] == "y1b" {
			t.Errorf("node %s writes %s", n.GetName(), n.Output[0])
		}
	}
	m := exporttest.Imported(t, src, dir)
	w, err := export.MergeBranches(m.Graph, nil, []lora.Layer{br})
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || w[br.Key] == nil {
		t.Fatalf("merged weights %v, want the reader's copy alone", w)
	}
	x := exporttest.Pixels(exporttest.LoadClassifier(t, out), 3, 1)
	want := exporttest.Logits(t, exporttest.Reference(t, m, w), x)
	if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, want.F); d > 1e-4 {
		t.Errorf("onnxruntime differs from the model with the reader's merged copy by %g", d)
	}
}
