package layers

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// builder makes small transformer-like graphs for the recognizer. Names are
// what the test chooses: anonymous ones stand for exporters that keep none.
type builder struct {
	g *graph.Graph
	n int
}

func newBuilder() (*builder, *graph.Value) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.Shape{{N: -1, Sym: "batch"}, {N: 5}, {N: 8}})
	return &builder{g: g}, x
}

func (b *builder) param(name string, shape ...int) *graph.Value {
	b.n++
	if name == "" {
		name = fmt.Sprintf("val_%d", b.n)
	}
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = float32(b.n) + float32(i)*1e-3 // distinct, so nothing looks shared
	}
	return b.g.AddParam(name, t)
}

func (b *builder) node(op, name string, attrs graph.Attrs, in ...*graph.Value) *graph.Value {
	b.n++
	if name == "" {
		name = fmt.Sprintf("node_%s_%d", op, b.n)
	}
	return b.g.AddNode(op, name, in, attrs, strings.ToLower(op)).Outputs[0]
}

// lin is MatMul(x, W[in,out]) + b. scope "" gives an anonymous node name.
func (b *builder) lin(x *graph.Value, scope, wname, bname string, in, out int) *graph.Value {
	w := b.param(wname, in, out)
	name := ""
	if scope != "" {
		name = scope + "/MatMul"
	}
	y := b.node("MatMul", name, nil, x, w)
	if bname == "-" {
		return y
	}
	bias := b.param(bname, out)
	if scope != "" {
		name = scope + "/Add"
	}
	return b.node("Add", name, nil, bias, y)
}

// attention: softmax(q k^T * s) v with the usual reshapes and transposes.
func (b *builder) attention(q, k, v *graph.Value) *graph.Value {
	shape := b.g.Const("shape", graph.I64([]int{4}, []int64{0, 0, 2, 4}))
	heads := func(x *graph.Value) *graph.Value {
		return b.node("Transpose", "", graph.Attrs{"perm": []int64{0, 2, 1, 3}}, b.node("Reshape", "", nil, x, shape))
	}
	kt := b.node("Transpose", "", graph.Attrs{"perm": []int64{0, 1, 3, 2}}, heads(k))
	s := b.node("MatMul", "", nil, heads(q), kt)
	s = b.node("Mul", "", nil, s, b.g.Const("scale", graph.ScalarF32(0.5)))
	p := b.node("Softmax", "", graph.Attrs{"axis": int64(-1)}, s)
	o := b.node("MatMul", "", nil, p, heads(v))
	o = b.node("Transpose", "", graph.Attrs{"perm": []int64{0, 2, 1, 3}}, o)
	return b.node("Reshape", "", nil, o, b.g.Const("shape3", graph.I64([]int{3}, []int64{0, 0, 8})))
}

func (b *builder) norm(x *graph.Value) *graph.Value {
	return b.node("LayerNormalization", "", graph.Attrs{"axis": int64(-1), "epsilon": float32(1e-6)}, x, b.param("", 8), b.param("", 8))
}

// timmBlock is x + proj(attn(qkv(ln x))), then x + fc2(gelu(fc1(ln x))), with
// the packed qkv split in three.
func (b *builder) timmBlock(x *graph.Value, i int, named bool) *graph.Value {
	scope := func(s string) string {
		if !named {
			return ""
		}
		return fmt.Sprintf("/blocks/blocks.%d/%s", i, s)
	}
	qkv := b.lin(b.norm(x), scope("attn/qkv"), "", "", 8, 24)
	split := b.g.AddNode("Split", "", []*graph.Value{qkv}, graph.Attrs{"axis": int64(-1), "num_outputs": int64(3)}, "q", "k", "v")
	a := b.attention(split.Outputs[0], split.Outputs[1], split.Outputs[2])
	x = b.node("Add", "", nil, x, b.lin(a, scope("attn/proj"), "", "", 8, 8))
	h := b.node("Gelu", "", graph.Attrs{"approximate": "none"}, b.lin(b.norm(x), scope("mlp/fc1"), "", "", 8, 32))
	return b.node("Add", "", nil, x, b.lin(h, scope("mlp/fc2"), "", "", 32, 8))
}

// classify pools the first token and applies a Gemm head (transB=1).
func (b *builder) classify(x *graph.Value, wname string) *graph.Value {
	t := b.node("Gather", "", graph.Attrs{"axis": int64(1)}, b.norm(x), b.g.Const("zero", graph.I64(nil, []int64{0})))
	return b.node("Gemm", "", graph.Attrs{"transB": int64(1)}, t, b.param(wname, 10, 8), b.param("", 10))
}

func (b *builder) recognize(t *testing.T, outs ...*graph.Value) *Report {
	t.Helper()
	b.g.Outputs = outs
	if err := b.g.Verify(); err != nil {
		t.Fatal(err)
	}
	r, err := Recognize(b.g)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// summary prints "name kind block in->out" per layer, "*" after structural names.
func summary(r *Report) string {
	var lines []string
	for _, b := range r.Blocks {
		s := ""
		if b.Structural {
			s = "*"
		}
		lines = append(lines, fmt.Sprintf("block %d %s%s", b.Index, b.Name, s))
	}
	for _, l := range r.Linears {
		s := ""
		if l.Structural {
			s = "*"
		}
		t := ""
		if l.Transposed {
			t = " T"
		}
		lines = append(lines, fmt.Sprintf("%s%s %s %d %d->%d%s", l.Name, s, l.Kind, l.Block, l.In, l.Out, t))
	}
	return strings.Join(lines, "\n")
}

func expect(t *testing.T, r *Report, want string) {
	t.Helper()
	want = strings.TrimSpace(strings.ReplaceAll(want, "\t", ""))
	if got := summary(r); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// Scopes name the layers; the repeated container level folds ("blocks", "blocks.1").
func TestRecognizeScopes(t *testing.T) {
	b, x := newBuilder()
	x = b.timmBlock(x, 0, true)
	x = b.timmBlock(x, 1, true)
	r := b.recognize(t, b.classify(x, "head.weight"))
	expect(t, r, `
		block 0 blocks.0
		block 1 blocks.1
		blocks.0.attn.qkv qkv 0 8->24
		blocks.0.attn.proj proj 0 8->8
		blocks.0.mlp.fc1 fc1 0 8->32
		blocks.0.mlp.fc2 fc2 0 32->8
		blocks.1.attn.qkv qkv 1 8->24
		blocks.1.attn.proj proj 1 8->8
		blocks.1.mlp.fc1 fc1 1 8->32
		blocks.1.mlp.fc2 fc2 1 32->8
		head head -1 8->10 T`)
	if r.Head == nil || r.Head.Name != "head" || r.Input.Name != "x" {
		t.Errorf("head %v, input %v", r.Head, r.Input)
	}
}

// Without names in the file, layers and blocks get timm's names, marked structural.
func TestRecognizeStructural(t *testing.T) {
	b, x := newBuilder()
	x = b.timmBlock(x, 0, false)
	x = b.timmBlock(x, 1, false)
	r := b.recognize(t, b.classify(x, ""))
	expect(t, r, `
		block 0 blocks.0*
		block 1 blocks.1*
		blocks.0.attn.qkv* qkv 0 8->24
		blocks.0.attn.proj* proj 0 8->8
		blocks.0.mlp.fc1* fc1 0 8->32
		blocks.0.mlp.fc2* fc2 0 32->8
		blocks.1.attn.qkv* qkv 1 8->24
		blocks.1.attn.proj* proj 1 8->8
		blocks.1.mlp.fc1* fc1 1 8->32
		blocks.1.mlp.fc2* fc2 1 32->8
		head* head -1 8->10 T`)
}

// A name used by several nodes is no evidence: a bias shared by every layer
// (an exporter deduplicating zeros) names none of them, while weight names and
// once-used bias names do.
func TestRecognizeSharedNames(t *testing.T) {
	b, x := newBuilder()
	shared := b.param("blocks.0.attn.qkv.bias", 8)
	lin := func(x *graph.Value, wname, bname string, bias *graph.Value) *graph.Value {
		y := b.node("MatMul", "", nil, x, b.param(wname, 8, 8))
		if bias == nil {
			bias = b.param(bname, 8)
		}
		return b.node("Add", "", nil, y, bias)
	}
	h := b.norm(x)
	q := lin(h, "", "", shared)
	k := lin(h, "enc.0.k.weight", "", shared)
	v := lin(h, "", "enc.0.v.bias", nil)
	a := b.attention(q, k, v)
	x = b.node("Add", "", nil, x, lin(a, "", "", shared))
	x = b.node("Add", "", nil, x, lin(b.node("Relu", "", nil, lin(b.norm(x), "", "", shared)), "", "", shared))
	r := b.recognize(t, b.classify(x, "fc.weight"))
	expect(t, r, `
		block 0 blocks.0*
		blocks.0.attn.q* q 0 8->8
		enc.0.k k 0 8->8
		enc.0.v v 0 8->8
		blocks.0.attn.proj* proj 0 8->8
		blocks.0.mlp.fc1* fc1 0 8->8
		blocks.0.mlp.fc2* fc2 0 8->8
		fc head -1 8->10 T`)
}

// Separate q, k, v are told apart by the operand they feed, not by their order
// in the file; a scope shared by two linears (a functional call inside one
// module) is no evidence, so the bias names them; "_weight"/"_bias" suffixes count.
func TestRecognizeRolesAndSharedScope(t *testing.T) {
	b, x := newBuilder()
	h := b.norm(x)
	v := b.lin(h, "/enc/layer.0/attn/value", "", "", 8, 8)
	k := b.lin(h, "/enc/layer.0/attn/key", "", "", 8, 8)
	q := b.lin(h, "/enc/layer.0/attn/query", "", "", 8, 8)
	a := b.attention(q, k, v)
	x = b.node("Add", "", nil, x, b.lin(a, "/enc/layer.0/attn", "", "enc.layer.0.attn.out_bias", 8, 8))
	h = b.lin(b.norm(x), "/enc/layer.0/attn", "", "", 8, 16) // same scope, anonymous bias
	x = b.node("Add", "", nil, x, b.lin(b.node("Relu", "", nil, h), "/enc/layer.0/mlp/mlp.3", "", "", 16, 8))
	r := b.recognize(t, b.classify(x, "head_weight"))
	expect(t, r, `
		block 0 enc.layer.0
		enc.layer.0.attn.value v 0 8->8
		enc.layer.0.attn.key k 0 8->8
		enc.layer.0.attn.query q 0 8->8
		enc.layer.0.attn.out proj 0 8->8
		blocks.0.mlp.fc1* fc1 0 8->16
		enc.layer.0.mlp.3 fc2 0 16->8
		head head -1 8->10 T`)
}

// Layouts: MatMul reading Transpose(W[out,in]) and Gemm with transB=0 ([in,out]).
// A packed kv beside a separate q is "kv". A model without a classifier has no head.
func TestRecognizeLayouts(t *testing.T) {
	b, x := newBuilder()
	h := b.norm(x)
	wq := b.param("q.weight", 8, 8)
	q := b.node("MatMul", "", nil, h, b.node("Transpose", "", graph.Attrs{"perm": []int64{1, 0}}, wq))
	kv := b.lin(h, "", "", "", 8, 16)
	sp := b.g.AddNode("Split", "", []*graph.Value{kv}, graph.Attrs{"axis": int64(-1), "num_outputs": int64(2)}, "k", "v")
	a := b.attention(q, sp.Outputs[0], sp.Outputs[1])
	flat := b.node("Reshape", "", nil, a, b.g.Const("flat", graph.I64([]int{2}, []int64{-1, 8})))
	proj := b.node("Gemm", "", nil, flat, b.param("", 8, 8), b.param("", 8))
	proj = b.node("Reshape", "", nil, proj, b.g.Const("back", graph.I64([]int{3}, []int64{-1, 5, 8})))
	x = b.node("Add", "", nil, x, proj)
	x = b.node("Add", "", nil, x, b.lin(b.node("Relu", "", nil, b.lin(b.norm(x), "", "", "", 8, 16)), "", "", "-", 16, 8))
	r := b.recognize(t, x)
	expect(t, r, `
		block 0 blocks.0*
		q q 0 8->8 T
		blocks.0.attn.kv* kv 0 8->16
		blocks.0.attn.proj* proj 0 8->8
		blocks.0.mlp.fc1* fc1 0 8->16
		blocks.0.mlp.fc2* fc2 0 16->8`)
	if r.Head != nil {
		t.Errorf("head %v in a model without a classifier", r.Head)
	}
	if l := r.Linears[0]; l.Weight != wq || l.Bias != nil {
		t.Errorf("q: weight %v bias %v", l.Weight, l.Bias)
	}
	if l := r.Linears[2]; l.Bias == nil || l.BiasNode != nil || l.Transposed {
		t.Errorf("proj: Gemm's C is the bias: %+v", l)
	}
	if l := r.Linears[4]; l.Bias != nil || l.Output != l.Node.Outputs[0] {
		t.Errorf("fc2 has no bias: %+v", l)
	}
}

// A weight read by two layers (an exporter storing identical initializers
// once) is marked shared, and its name is no evidence.
func TestRecognizeSharedWeight(t *testing.T) {
	b, x := newBuilder()
	x = b.timmBlock(x, 0, false)
	x = b.timmBlock(x, 1, false)
	b.recognize(t, b.classify(x, "head.weight"))
	var fc1 []*graph.Node
	for _, n := range b.g.Nodes {
		if n.Op == "MatMul" && n.In(1).IsConst() && n.In(1).Const.Shape[1] == 32 {
			fc1 = append(fc1, n)
		}
	}
	w := fc1[0].In(1)
	w.Name = "blocks.0.mlp.fc1.weight"
	fc1[1].Inputs[1] = w
	r, err := Recognize(b.g)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range r.Linears {
		if want := l.Kind == "fc1"; l.SharedWeight != want {
			t.Errorf("%s: shared %v, want %v", l.Name, l.SharedWeight, want)
		}
		if l.Kind == "fc1" && !l.Structural {
			t.Errorf("%s named from a shared weight", l.Name)
		}
	}
}

// Two classifiers averaged (a distilled DeiT) are both heads; a linear before
// the first attention (a linear patch embedding) stays outside the blocks.
func TestRecognizeTwoHeads(t *testing.T) {
	b, x := newBuilder()
	x = b.lin(x, "/patch/proj", "", "", 8, 8)
	x = b.timmBlock(x, 0, false)
	h1 := b.classify(x, "head.weight")
	h2 := b.classify(x, "head_dist.weight")
	avg := b.node("Div", "", nil, b.node("Add", "", nil, h1, h2), b.g.Const("two", graph.ScalarF32(2)))
	r := b.recognize(t, avg)
	expect(t, r, `
		block 0 blocks.0*
		patch.proj linear -1 8->8
		blocks.0.attn.qkv* qkv 0 8->24
		blocks.0.attn.proj* proj 0 8->8
		blocks.0.mlp.fc1* fc1 0 8->32
		blocks.0.mlp.fc2* fc2 0 32->8
		head head -1 8->10 T
		head_dist head -1 8->10 T`)
	if len(r.Targets()) != 6 {
		t.Errorf("targets %v", r.Targets())
	}
}

// A Softmax that is not between two activation products (a classifier's
// output) is no attention; a graph without attention has no blocks.
func TestRecognizeNoAttention(t *testing.T) {
	b, x := newBuilder()
	h := b.node("Relu", "", nil, b.lin(x, "", "", "", 8, 8))
	y := b.node("Softmax", "", graph.Attrs{"axis": int64(-1)}, b.lin(h, "", "", "", 8, 4))
	r := b.recognize(t, y)
	if len(r.Blocks) != 0 {
		t.Fatalf("blocks %v", r.Blocks)
	}
	expect(t, r, `
		linear_0* linear -1 8->8
		head* head -1 8->4`)
	if r.Head == nil || r.Head != r.Linears[1] {
		t.Errorf("head %v", r.Head)
	}
}

func TestScopeName(t *testing.T) {
	for in, want := range map[string]string{
		"/blocks/blocks.3/mlp/fc1/MatMul":                    "blocks.3.mlp.fc1",
		"/blocks.3/mlp/fc1/MatMul":                           "blocks.3.mlp.fc1",
		"/encoder/layers/encoder_layer_0/mlp/mlp.0/MatMul":   "encoder.layers.encoder_layer_0.mlp.0",
		"/vit/encoder/layer.0/attention/attention/query/Add": "vit.encoder.layer.0.attention.attention.query",
		"/layers/layers.0/blocks/blocks.1/attn/qkv/MatMul_1": "layers.0.blocks.1.attn.qkv",
		"/heads/head/Gemm":                                   "heads.head",
		"/Gemm":                                              "",
		"node_MatMul_12":                                     "",
		"MatMul_3":                                           "",
		"//MatMul":                                           "",
		"":                                                   "",
		"/a b/MatMul":                                        "",
		"/classifier/Gemm":                                   "classifier",
	} {
		if got := scopeName(in); got != want {
			t.Errorf("scopeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStripSuffix(t *testing.T) {
	for _, c := range []struct{ in, suffix, want string }{
		{"blocks.0.attn.qkv.weight", "weight", "blocks.0.attn.qkv"},
		{"self_attention.in_proj_weight", "weight", "self_attention.in_proj"},
		{"blocks.0.attn.qkv.bias", "bias", "blocks.0.attn.qkv"},
		{"onnx::MatMul_601", "weight", ""},
		{"weight", "weight", ""},
		{".weight", "weight", ""},
		{"a..weight", "weight", ""},
		{"val_13", "weight", ""},
	} {
		if got := stripSuffix(c.in, c.suffix); got != c.want {
			t.Errorf("stripSuffix(%q, %q) = %q, want %q", c.in, c.suffix, got, c.want)
		}
	}
}

// A product of parameters alone (Swin V2's position-bias MLP: a constant
// table through Linear, ReLU, Linear) makes weights: it is no layer, whatever
// its scope, and the block's layers stay as they are.
func TestRecognizeParameterProductIsNoLayer(t *testing.T) {
	b, x := newBuilder()
	table := b.g.Const("table", graph.NewTensor(graph.Float32, []int{5, 2}))
	h := b.node("Relu", "", nil, b.lin(table, "/blocks/blocks.0/attn/cpb_mlp/cpb_mlp.0", "", "", 2, 16))
	bias := b.lin(h, "/blocks/blocks.0/attn/cpb_mlp/cpb_mlp.2", "", "-", 16, 8)
	x = b.node("Add", "", nil, b.timmBlock(x, 0, true), bias)
	r := b.recognize(t, b.classify(x, "head.weight"))
	expect(t, r, `
		block 0 blocks.0
		blocks.0.attn.qkv qkv 0 8->24
		blocks.0.attn.proj proj 0 8->8
		blocks.0.mlp.fc1 fc1 0 8->32
		blocks.0.mlp.fc2 fc2 0 32->8
		head head -1 8->10 T`)
}
