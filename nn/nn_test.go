package nn_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/nn"
)

func randT(r *rand.Rand, shape ...int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = float32(r.NormFloat64())
	}
	return t
}

// linearGraph is y = x W + b as MatMul+Add (W [in,out]) or as Gemm with transB (W [out,in]).
func linearGraph(gemm bool, w, b *graph.Tensor, batch, in int) (*graph.Graph, *graph.Node) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(batch, in))
	W := g.AddParam("w", w)
	B := g.AddParam("b", b)
	var n *graph.Node
	if gemm {
		n = g.AddNode("Gemm", "fc", []*graph.Value{x, W, B}, graph.Attrs{"transB": int64(1)}, "y")
		g.Outputs = []*graph.Value{g.Op("Relu", nil, n.Outputs[0])}
	} else {
		n = g.AddNode("MatMul", "fc", []*graph.Value{x, W}, nil, "xw")
		g.Outputs = []*graph.Value{g.Op("Relu", nil, g.Op("Add", nil, n.Outputs[0], B))}
	}
	return g, n
}

// A LoRA branch computes exactly what the merged weight W + s B A computes,
// in both weight layouts.
func TestLoRAEqualsMergedWeight(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const batch, in, out, rank = 5, 6, 4, 2
	const s = 0.5
	x := randT(r, batch, in)
	A, B := randT(r, rank, in), randT(r, out, rank)
	for _, gemm := range []bool{false, true} {
		var w *graph.Tensor
		if gemm {
			w = randT(r, out, in)
		} else {
			w = randT(r, in, out)
		}
		bias := randT(r, out)
		g, node := linearGraph(gemm, w, bias, batch, in)
		a := g.AddInput("lora_A", graph.Float32, graph.StaticShape(rank, in))
		b := g.AddInput("lora_B", graph.Float32, graph.StaticShape(out, rank))
		nn.LoRA(g, node, a, b, s)
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
		// merged: W' = W + s (B A)^T for [in,out], W + s B A for [out,in]
		merged := w.Clone()
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				var d float32
				for k := 0; k < rank; k++ {
					d += B.F[o*rank+k] * A.F[k*in+i]
				}
				if gemm {
					merged.F[o*in+i] += s * d
				} else {
					merged.F[i*out+o] += s * d
				}
			}
		}
		g2, _ := linearGraph(gemm, merged, bias, batch, in)
		p2, err := compile.Compile(g2, compile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := p2.Run(x)
		for i := range want[0].F {
			if math.Abs(float64(got[0].F[i]-want[0].F[i])) > 1e-5 {
				t.Fatalf("gemm=%v: output %d: LoRA %g, merged %g", gemm, i, got[0].F[i], want[0].F[i])
			}
		}
	}
}

// Gradients reach the LoRA factors and agree with central differences.
func TestLoRAGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const batch, in, out, rank = 4, 5, 3, 2
	g, node := linearGraph(false, randT(r, in, out), randT(r, out), batch, in)
	a := g.AddInput("lora_A", graph.Float32, graph.StaticShape(rank, in))
	b := g.AddInput("lora_B", graph.Float32, graph.StaticShape(out, rank))
	nn.LoRA(g, node, a, b, 2)
	oh := g.AddInput("onehot", graph.Float32, graph.StaticShape(batch, out))
	loss := testutil.CrossEntropy(g, g.Outputs[0], oh)
	g.Outputs = []*graph.Value{loss}
	p, err := compile.Compile(g, compile.Options{Verify: true, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{a, b}}})
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := compile.Compile(g, compile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, A, B := randT(r, batch, in), randT(r, rank, in), randT(r, out, rank)
	onehot := graph.NewTensor(graph.Float32, []int{batch, out})
	for i := 0; i < batch; i++ {
		onehot.F[i*out+i%out] = 1
	}
	if _, err := p.Run(x, A, B, onehot); err != nil {
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
			fp, _ := fwd.Run(x, A, B, onehot)
			lp := float64(fp[0].F[0])
			c.t.F[j] = orig - h
			fm, _ := fwd.Run(x, A, B, onehot)
			lm := float64(fm[0].F[0])
			c.t.F[j] = orig
			fd := (lp - lm) / (2 * h)
			if math.Abs(fd-float64(grad.F[j])) > 2e-3*(1+math.Abs(fd)) {
				t.Fatalf("%s[%d]: gradient %g, central difference %g", c.v.Name, j, grad.F[j], fd)
			}
		}
	}
}
