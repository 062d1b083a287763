package compile_test

import (
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
)

// A low-rank branch beside a linear layer, y = x·W + (x·Aᵀ)·(s B)ᵀ (+ b),
// is computed at the weight's shape in the forward and in the input's
// gradient: two products of the activations' size fewer, and the same
// output and gradients (of the input and of both factors) as without the
// pass, for a weight stored [in, out], one read through a Transpose, and a
// Gemm with transB and a bias.
func TestFuseLowRankKeepsResults(t *testing.T) {
	const rows, in, out, rank = 20, 6, 3, 2
	r := rand.New(rand.NewPCG(5, 5))
	randT := func(shape ...int) *graph.Tensor {
		t := graph.NewTensor(graph.Float32, shape)
		for i := range t.F {
			t.F[i] = float32(r.NormFloat64())
		}
		return t
	}
	swap := func() graph.Attrs { return graph.Attrs{"perm": []int64{1, 0}} }
	for _, form := range []string{"MatMul", "MatMul(Transpose(W))", "Gemm"} {
		g := graph.New()
		xShape := []int{4, 5, in}
		if form == "Gemm" {
			xShape = []int{rows, in}
		}
		x := g.AddInput("x", graph.Float32, graph.StaticShape(xShape...))
		a := g.AddInput("a", graph.Float32, graph.StaticShape(rank, in))
		b := g.AddInput("b", graph.Float32, graph.StaticShape(out, rank))
		var y *graph.Value
		switch form {
		case "MatMul":
			y = g.Op("MatMul", nil, x, g.AddParam("w", randT(in, out)))
		case "MatMul(Transpose(W))":
			y = g.Op("MatMul", nil, x, g.Op("Transpose", swap(), g.AddParam("w", randT(out, in))))
		case "Gemm":
			y = g.Op("Gemm", graph.Attrs{"transB": int64(1)}, x, g.AddParam("w", randT(out, in)), g.AddParam("c", randT(out)))
		}
		sb := g.Op("Mul", nil, b, g.Const("s", graph.ScalarF32(0.5)))
		low := g.Op("MatMul", nil, g.Op("MatMul", nil, x, g.Op("Transpose", swap(), a)), g.Op("Transpose", swap(), sb))
		z := g.Op("Add", nil, y, low)
		g.Outputs = []*graph.Value{g.Op("Relu", nil, g.Op("Add", nil, z, g.AddParam("bias", randT(out))))}
		seed := g.AddInput("seed", graph.Float32, graph.StaticShape(append(xShape[:len(xShape)-1:len(xShape)-1], out)...))
		spec := &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: []*graph.Value{x, a, b}}
		on, err := compile.Compile(g, compile.Options{Grad: spec, Verify: true})
		if err != nil {
			t.Fatal(err)
		}
		off, err := compile.Compile(g, compile.Options{Grad: spec, Disable: []string{"fuse-lowrank"}})
		if err != nil {
			t.Fatal(err)
		}
		// products as large as the layer's output or input
		large := func(p *compile.Program) int {
			n := 0
			for _, nd := range p.Graph.Nodes {
				if s := graph.Numel(nd.Outputs[0].StaticShape()); (nd.Op == "MatMul" || nd.Op == "Gemm" || nd.Op == "MatMulBias") && (s == rows*out || s == rows*in) {
					n++
				}
			}
			return n
		}
		if a, b := large(on), large(off); a != b-2 {
			t.Errorf("%s: %d products of the activations' size with the pass, %d without", form, a, b)
		}
		ins := []*graph.Tensor{randT(xShape...), randT(rank, in), randT(out, rank), randT(seed.StaticShape()...)}
		var res [2][4][]float32
		for i, p := range []*compile.Program{on, off} {
			o, err := p.Forward(ins[:3]...)
			if err != nil {
				t.Fatal(err)
			}
			res[i][0] = append([]float32{}, o[0].F...)
			if err := p.Backward(ins[3]); err != nil {
				t.Fatal(err)
			}
			for j, v := range []*graph.Value{x, a, b} {
				res[i][j+1] = append([]float32{}, p.Grad(v).F...)
			}
		}
		for j, what := range []string{"output", "input gradient", "A gradient", "B gradient"} {
			if e := testutil.MaxAbsDiff(res[0][j], res[1][j]) / testutil.MaxAbs(res[1][j]); e > 1e-5 {
				t.Errorf("%s: %s differs by %g relative", form, what, e)
			}
		}
	}
}
