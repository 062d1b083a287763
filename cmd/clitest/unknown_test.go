package clitest

// Models of architectures the tool does not recognize: one line naming what
// was not found, a non-zero exit, and nothing adapted.

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/npy"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/workspace"
)

// protoBuilder writes small image models as ONNX protos.
type protoBuilder struct {
	nodes []*onnx.NodeProto
	inits []*onnx.TensorProto
	n     int
}

func (b *protoBuilder) node(op string, attrs []*onnx.AttributeProto, in ...string) string {
	b.n++
	out := op + "_" + string(rune('a'+b.n))
	b.nodes = append(b.nodes, &onnx.NodeProto{OpType: proto.String(op), Name: proto.String("/" + out + "/" + op), Input: in, Output: []string{out}, Attribute: attrs})
	return out
}

// weight adds a float initializer of small distinct values.
func (b *protoBuilder) weight(name string, dims ...int64) string {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((i*7+b.n)%11-5) / 20
	}
	f := int32(onnx.TensorProto_FLOAT)
	b.inits = append(b.inits, &onnx.TensorProto{Name: proto.String(name), DataType: &f, Dims: dims, FloatData: v})
	return name
}

func (b *protoBuilder) ints64(name string, v ...int64) string {
	i := int32(onnx.TensorProto_INT64)
	b.inits = append(b.inits, &onnx.TensorProto{Name: proto.String(name), DataType: &i, Dims: []int64{int64(len(v))}, Int64Data: v})
	return name
}

func intsAttr(name string, v ...int64) *onnx.AttributeProto {
	t := onnx.AttributeProto_INTS
	return &onnx.AttributeProto{Name: proto.String(name), Type: &t, Ints: v}
}

func intAttr(name string, v int64) *onnx.AttributeProto {
	t := onnx.AttributeProto_INT
	return &onnx.AttributeProto{Name: proto.String(name), Type: &t, I: proto.Int64(v)}
}

// conv is a k x k convolution with a bias, padded to keep the size at stride 1.
func (b *protoBuilder) conv(x, name string, in, out, k, stride int64) string {
	p := k / 2
	return b.node("Conv", []*onnx.AttributeProto{intsAttr("kernel_shape", k, k), intsAttr("strides", stride, stride), intsAttr("pads", p, p, p, p)},
		x, b.weight(name+".weight", out, in, k, k), b.weight(name+".bias", out))
}

// model wraps the nodes: input [batch, 3, size, size], logits [batch, 10].
func (b *protoBuilder) model(size int64, logits string) []byte {
	f := int32(onnx.TensorProto_FLOAT)
	dim := func(n int64) *onnx.TensorShapeProto_Dimension {
		return &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: n}}
	}
	batch := &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}}
	vi := func(name string, dims ...*onnx.TensorShapeProto_Dimension) *onnx.ValueInfoProto {
		return &onnx.ValueInfoProto{Name: proto.String(name), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: &f, Shape: &onnx.TensorShapeProto{Dim: dims}}}}}
	}
	b.nodes = append(b.nodes, &onnx.NodeProto{OpType: proto.String("Identity"), Name: proto.String("out"), Input: []string{logits}, Output: []string{"logits"}})
	m := &onnx.ModelProto{IrVersion: proto.Int64(8), ProducerName: proto.String("test"),
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnx.GraphProto{Name: proto.String("g"), Node: b.nodes, Initializer: b.inits,
			Input:  []*onnx.ValueInfoProto{vi("input", batch, dim(3), dim(size), dim(size))},
			Output: []*onnx.ValueInfoProto{vi("logits", batch, dim(10))}}}
	data, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return data
}

// head is Flatten and a Gemm to 10 classes.
func (b *protoBuilder) head(x string, in int64) string {
	return b.node("Gemm", []*onnx.AttributeProto{intAttr("transB", 1)}, b.node("Flatten", nil, x), b.weight("fc.weight", 10, in), b.weight("fc.bias", 10))
}

// cnnModel: two convolutions, global pooling and a linear classifier.
func cnnModel() []byte {
	b := &protoBuilder{}
	y := b.node("Relu", nil, b.conv("input", "features.0", 3, 4, 3, 1))
	y = b.node("GlobalAveragePool", nil, b.node("Relu", nil, b.conv(y, "features.2", 4, 4, 3, 2)))
	return b.model(8, b.head(y, 4))
}

// convAttentionModel: a self-attention over the 16 positions of a 4x4
// image whose queries, keys and values are 1x1 convolutions (a non-local
// block), then mean pooling and a linear classifier.
func convAttentionModel() []byte {
	b := &protoBuilder{}
	flat := b.ints64("flat", 0, 4, -1)
	q := b.node("Reshape", nil, b.conv("input", "q", 3, 4, 1, 1), flat)
	k := b.node("Reshape", nil, b.conv("input", "k", 3, 4, 1, 1), flat)
	v := b.node("Reshape", nil, b.conv("input", "v", 3, 4, 1, 1), flat)
	swap := intsAttr("perm", 0, 2, 1)
	s := b.node("MatMul", nil, b.node("Transpose", []*onnx.AttributeProto{swap}, q), k)
	p := b.node("Softmax", []*onnx.AttributeProto{intAttr("axis", -1)}, s)
	o := b.node("MatMul", nil, p, b.node("Transpose", []*onnx.AttributeProto{swap}, v))
	pooled := b.node("ReduceMean", []*onnx.AttributeProto{intsAttr("axes", 1), intAttr("keepdims", 0)}, o)
	return b.model(4, b.head(pooled, 4))
}

// grayImages writes two mid-grey 3 x size x size images.
func grayImages(t *testing.T, path string, size int) string {
	t.Helper()
	x := graph.NewTensor(graph.Float32, []int{2, 3, size, size})
	for i := range x.F {
		x.F[i] = 0.5
	}
	if err := npy.WriteFile(path, x); err != nil {
		t.Fatal(err)
	}
	return path
}

// rawWorkspace writes a workspace for a model as hyperat-import would, but
// without its checks: what hyperat-tune meets if a workspace holds a model
// it cannot tune.
func rawWorkspace(t *testing.T, path, dir string) {
	t.Helper()
	sum, size, err := workspace.SumFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnximport.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := layers.Recognize(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := workspace.New(path, sum, size, m, rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := workspace.Write(dir, ws, path, false); err != nil {
		t.Fatal(err)
	}
}

// A CNN and a convolutional attention are refused by hyperat-import and by
// hyperat-tune with one line naming what was not found, and nothing is
// written: no workspace, no tuning result.
func TestUnrecognizedArchitectures(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		size int
		want []string
	}{
		{"cnn", cnnModel(), 8, []string{"cnn.onnx", "no transformer block recognized", "no attention", "1 linear layer and 2 convolutions", "Vision Transformers"}},
		{"conv-attention", convAttentionModel(), 4, []string{"conv-attention.onnx", "1 attention recognized", "no linear layer computes the queries, keys or values",
			"Conv (node /Conv_b/Conv)", "Vision Transformers"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := write(t, filepath.Join(dir, c.name+".onnx"), c.data)
			// the model is a classifier that runs: only its architecture is unknown
			succeeds(t, hyperat(t, dir, "hyperat-eval", path, "--input", grayImages(t, filepath.Join(dir, c.name+"-x.npy"), c.size), "--logits", filepath.Join(dir, c.name+"-y.npy")))
			ws := filepath.Join(dir, "ws-"+c.name)
			fails(t, hyperat(t, dir, "hyperat-import", path, "--workspace", ws), 1, c.want...)
			noWorkspace(t, ws)

			rawWorkspace(t, path, ws)
			before := snapshot(t, ws)
			r := hyperat(t, dir, "hyperat-tune", "--workspace", ws, "--data", testutil.Fixture("mnist"), "--iters", "2", "--batch", "4", "--val", "8")
			fails(t, r, 1, c.want[1:]...)
			sameFiles(t, before, snapshot(t, ws))
		})
	}
}

// A transformer whose classifier is no linear layer of an initializer (here
// its weight is scaled by a constant in the graph) imports with a note, and hyperat-tune
// refuses to train a head it has not found unless told --no-head; with it,
// the blocks are adapted.
func TestNoHeadRecognized(t *testing.T) {
	_, data := model(t)
	dir := t.TempDir()
	path := edit(t, data, dir, "nohead.onnx", func(m *onnx.ModelProto) {
		for _, n := range m.Graph.Node {
			for i, in := range n.Input {
				if in == "heads.head.weight" {
					n.Input[i] = "head_weight_scaled"
					f := int32(onnx.TensorProto_FLOAT)
					m.Graph.Initializer = append(m.Graph.Initializer, &onnx.TensorProto{Name: proto.String("one"), DataType: &f, FloatData: []float32{1}})
					m.Graph.Node = append([]*onnx.NodeProto{{OpType: proto.String("Mul"), Name: proto.String("scale"),
						Input: []string{in, "one"}, Output: []string{"head_weight_scaled"}}}, m.Graph.Node...)
					return
				}
			}
		}
		t.Fatal("no node reads heads.head.weight")
	})
	r := hyperat(t, dir, "hyperat-import", path)
	succeeds(t, r)
	if !strings.Contains(r.stdout, "no classifier head recognized") || strings.Contains(r.stdout, "heads.head") {
		t.Errorf("import output:\n%s", r.stdout)
	}
	args := []string{"--data", testutil.Fixture("mnist"), "--eps", "0.1", "--iters", "2", "--batch", "4", "--steps", "1",
		"--rank", "2", "--val", "8", "--val-steps", "1", "--eval-every", "2"}
	before := snapshot(t, filepath.Join(dir, workspace.DefaultDir))
	fails(t, hyperat(t, dir, "hyperat-tune", args...), 1, "no classifier head", "--no-head")
	sameFiles(t, before, snapshot(t, filepath.Join(dir, workspace.DefaultDir)))
	r = hyperat(t, dir, "hyperat-tune", append(args, "--no-head")...)
	if r.code != 0 && !strings.Contains(r.stderr, "collapsed") {
		t.Fatalf("tune --no-head:\n%s", r)
	}
	if !strings.Contains(r.stdout, "8 adapted layers") {
		t.Errorf("tune --no-head does not adapt the blocks' 8 layers:\n%s", r.stdout)
	}
}
