package lora_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
)

func randT(r *rand.Rand, shape ...int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = float32(r.NormFloat64())
	}
	return t
}

const batch, in, out, rank = 5, 6, 4, 2

// form is one way a linear layer reads its weight.
type form struct {
	name       string
	transposed bool // W is [out, in]
	build      func(g *graph.Graph, x, w, b *graph.Value) *graph.Node
}

var forms = []form{
	{"MatMul+Add", false, func(g *graph.Graph, x, w, b *graph.Value) *graph.Node {
		n := g.AddNode("MatMul", "fc", []*graph.Value{x, w}, nil, "xw")
		g.Op("Add", nil, n.Outputs[0], b)
		return n
	}},
	{"Gemm transB", true, func(g *graph.Graph, x, w, b *graph.Value) *graph.Node {
		return g.AddNode("Gemm", "fc", []*graph.Value{x, w, b}, graph.Attrs{"transB": int64(1)}, "y")
	}},
	{"MatMul(Transpose(W))", true, func(g *graph.Graph, x, w, b *graph.Value) *graph.Node {
		n := g.AddNode("MatMul", "fc", []*graph.Value{x, g.Op("Transpose", graph.Attrs{"perm": []int64{1, 0}}, w)}, nil, "xw")
		g.Op("Add", nil, b, n.Outputs[0])
		return n
	}},
	{"Gemm transA alpha", false, func(g *graph.Graph, x, w, b *graph.Value) *graph.Node {
		xt := g.Op("Transpose", graph.Attrs{"perm": []int64{1, 0}}, x)
		return g.AddNode("Gemm", "fc", []*graph.Value{xt, w, b}, graph.Attrs{"transA": int64(1), "alpha": float32(0.5)}, "y")
	}},
}

// linear is relu(layer(x)) with weight w, the layer found by layers.Match.
func (f form) linear(t *testing.T, w, bias *graph.Tensor) (*graph.Graph, *layers.Linear) {
	t.Helper()
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(batch, in))
	n := f.build(g, x, g.AddParam("w", w), g.AddParam("b", bias))
	l := layers.Match(g, g.Consumers(), n)
	if l == nil || l.Transposed != f.transposed || l.In != in || l.Out != out || l.Bias == nil {
		t.Fatalf("%s: matched %+v", f.name, l)
	}
	g.Outputs = []*graph.Value{g.Op("Relu", nil, l.Output)}
	return g, l
}

func (f form) weight(r *rand.Rand) *graph.Tensor {
	if f.transposed {
		return randT(r, out, in)
	}
	return randT(r, in, out)
}

// A branch computes what its merge into the weight computes, in every form
// of layer; Merge equals W + s B A written out.
func TestInsertEqualsMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const s = 0.5
	for _, f := range forms {
		x := randT(r, batch, in)
		A, B := randT(r, rank, in), randT(r, out, rank)
		w, bias := f.weight(r), randT(r, out)
		g, l := f.linear(t, w, bias)
		a := g.AddInput("lora_A", graph.Float32, graph.StaticShape(rank, in))
		b := g.AddInput("lora_B", graph.Float32, graph.StaticShape(out, rank))
		lora.Insert(g, l, a, b, s)
		if err := g.Verify(); err != nil {
			t.Fatal(err)
		}
		p, err := compile.Compile(g, compile.Options{Verify: true})
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Run(x, A, B)
		if err != nil {
			t.Fatal(err)
		}
		merged := w.Clone()
		lora.Merge(merged, f.transposed, A, B, s)
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				var d float32
				for k := 0; k < rank; k++ {
					d += B.F[o*rank+k] * A.F[k*in+i]
				}
				at := i*out + o
				if f.transposed {
					at = o*in + i
				}
				if e := math.Abs(float64(merged.F[at] - w.F[at] - s*d)); e > 1e-5 {
					t.Fatalf("%s: Merge differs from W + s B A by %g", f.name, e)
				}
			}
		}
		g2, _ := f.linear(t, merged, bias)
		p2, err := compile.Compile(g2, compile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := p2.Run(x)
		for i := range want[0].F {
			if math.Abs(float64(got[0].F[i]-want[0].F[i])) > 1e-5 {
				t.Fatalf("%s: output %d: branch %g, merged %g", f.name, i, got[0].F[i], want[0].F[i])
			}
		}
	}
}

// Gradients reach the factors through the branch and agree with central
// differences.
func TestInsertGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, f := range forms {
		g, l := f.linear(t, f.weight(r), randT(r, out))
		a := g.AddInput("lora_A", graph.Float32, graph.StaticShape(rank, in))
		b := g.AddInput("lora_B", graph.Float32, graph.StaticShape(out, rank))
		lora.Insert(g, l, a, b, 2)
		// loss = sum(relu(layer(x)) * c): any scalar reading every output
		c := g.AddInput("c", graph.Float32, graph.StaticShape(batch, out))
		loss := g.Op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, g.Op("Mul", nil, g.Outputs[0], c))
		g.Outputs = []*graph.Value{loss}
		p, err := compile.Compile(g, compile.Options{Verify: true, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{a, b}}})
		if err != nil {
			t.Fatal(err)
		}
		fwd, err := compile.Compile(g, compile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		x, A, B, C := randT(r, batch, in), randT(r, rank, in), randT(r, out, rank), randT(r, batch, out)
		if _, err := p.Run(x, A, B, C); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			v *graph.Value
			t *graph.Tensor
		}{{a, A}, {b, B}} {
			grad := p.Grad(c.v).Clone()
			for j := range c.t.F {
				const h = 1e-2
				orig := c.t.F[j]
				c.t.F[j] = orig + h
				fp, _ := fwd.Run(x, A, B, C)
				lp := float64(fp[0].F[0])
				c.t.F[j] = orig - h
				fm, _ := fwd.Run(x, A, B, C)
				lm := float64(fm[0].F[0])
				c.t.F[j] = orig
				fd := (lp - lm) / (2 * h)
				if math.Abs(fd-float64(grad.F[j])) > 2e-3*(1+math.Abs(fd)) {
					t.Fatalf("%s: %s[%d]: gradient %g, central difference %g", f.name, c.v.Name, j, grad.F[j], fd)
				}
			}
		}
	}
}

// A layer's description reads back from its JSON, and from a result written
// before per-reader keys, which names the weight by its initializer alone.
func TestLayerJSON(t *testing.T) {
	l := lora.Layer{Name: "blocks.0.mlp.fc1", Kind: "fc1", Block: 0, In: 8, Out: 32, Transposed: true,
		Key: layers.WeightKey{Init: "val_3", Reader: "/blocks.0/mlp/fc1/Gemm_output_0"},
		A:   graph.NewTensor(graph.Float32, []int{2, 8}), Scale: 2}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"Name":"blocks.0.mlp.fc1","Kind":"fc1","Block":0,"In":8,"Out":32,"Weight":"val_3","Transposed":true,"Key":"val_3@/blocks.0/mlp/fc1/Gemm_output_0"}`
	if string(b) != want {
		t.Errorf("JSON %s\nwant %s", b, want)
	}
	var back lora.Layer
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	l.A, l.Scale = nil, 0
	if back != l {
		t.Errorf("read back %+v, want %+v", back, l)
	}
	var old lora.Layer
	if err := json.Unmarshal([]byte(`{"Name":"head","Kind":"fc2","Block":1,"In":4,"Out":2,"Weight":"w2","Transposed":false}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Key != (layers.WeightKey{Init: "w2"}) || old.Name != "head" || old.In != 4 {
		t.Errorf("an old result's layer reads as %+v", old)
	}
}
