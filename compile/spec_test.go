package compile

import (
	"math"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// run compiles g (outputs set) and runs it on ins.
func run(t *testing.T, g *graph.Graph, ins ...*graph.Tensor) []*graph.Tensor {
	t.Helper()
	p, err := Compile(g, Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := p.Run(ins...)
	if err != nil {
		t.Fatal(err)
	}
	return outs
}

// LayerNormalization's optional outputs are each row's mean and
// 1/sqrt(var + eps), shaped as x with the normalized dims set to 1.
func TestLayerNormStatistics(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(2, 2, 3))
	s := g.Const("s", graph.F32([]int{2, 3}, []float32{1, 1, 1, 1, 1, 1}))
	n := g.AddNode("LayerNormalization", "ln", []*graph.Value{x, s}, graph.Attrs{"axis": int64(1), "epsilon": float32(0.5)}, "y", "mean", "inv")
	g.Outputs = n.Outputs
	in := graph.F32([]int{2, 2, 3}, []float32{1, 2, 3, 4, 5, 6, -1, -1, -1, 1, 1, 1})
	outs := run(t, g, in)
	for i := 1; i < 3; i++ {
		if !sameShape(outs[i].Shape, []int{2, 1, 1}) {
			t.Fatalf("output %d shape %v, want [2 1 1]", i, outs[i].Shape)
		}
	}
	// row 0: mean 3.5, var 35/12; row 1: mean 0, var 1
	wantMean := []float32{3.5, 0}
	wantInv := []float32{float32(1 / math.Sqrt(35.0/12+0.5)), float32(1 / math.Sqrt(1.5))}
	for r := 0; r < 2; r++ {
		if outs[1].F[r] != wantMean[r] || math.Abs(float64(outs[2].F[r]-wantInv[r])) > 1e-7 {
			t.Errorf("row %d: mean %g inv %g, want %g %g", r, outs[1].F[r], outs[2].F[r], wantMean[r], wantInv[r])
		}
		for j := 0; j < 6; j++ {
			want := (in.F[r*6+j] - wantMean[r]) * wantInv[r]
			if d := math.Abs(float64(outs[0].F[r*6+j] - want)); d > 1e-6 {
				t.Errorf("y[%d][%d] = %g, want %g", r, j, outs[0].F[r*6+j], want)
			}
		}
	}
}

// Pow's base and exponent may have different types; the result has the
// base's (an integer result is truncated, as numpy's astype does).
func TestPowMixedTypes(t *testing.T) {
	g := graph.New()
	xf := g.AddInput("xf", graph.Float32, graph.StaticShape(3))
	xi := g.AddInput("xi", graph.Int64, graph.StaticShape(3))
	g.Outputs = []*graph.Value{
		op(g, "Pow", nil, xf, g.Const("ei", graph.I64([]int{3}, []int64{2, -1, 0}))),
		op(g, "Pow", nil, xi, g.Const("ef", graph.F32([]int{3}, []float32{0.5, 2, 1.5}))),
	}
	outs := run(t, g, graph.F32([]int{3}, []float32{1.5, 4, -2}), graph.I64([]int{3}, []int64{9, -3, 5}))
	if f := outs[0]; f.DType != graph.Float32 || f.F[0] != 2.25 || f.F[1] != 0.25 || f.F[2] != 1 {
		t.Errorf("float ^ int: %s %v, want float32 [2.25 0.25 1]", f.DType, f.F)
	}
	if i := outs[1]; i.DType != graph.Int64 || i.I[0] != 3 || i.I[1] != 9 || i.I[2] != 11 {
		t.Errorf("int ^ float: %s %v, want int64 [3 9 11]", i.DType, i.I)
	}
}

// Clip takes integers, with integer bounds; min above max gives max.
func TestClipIntegers(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Int64, graph.StaticShape(5))
	i := func(v int64) *graph.Value { return g.Const("b", graph.I64(nil, []int64{v})) }
	g.Outputs = []*graph.Value{
		op(g, "Clip", nil, x, i(-1), i(2)),
		g.AddNode("Clip", "lo-only", []*graph.Value{x, i(0)}, nil, "lo").Outputs[0],
		op(g, "Clip", nil, x, i(3), i(1)),
	}
	outs := run(t, g, graph.I64([]int{5}, []int64{-7, -1, 0, 2, 9}))
	for k, want := range [][]int64{{-1, -1, 0, 2, 2}, {0, 0, 0, 2, 9}, {1, 1, 1, 1, 1}} {
		for j, v := range want {
			if outs[k].I[j] != v {
				t.Errorf("output %d: %v, want %v", k, outs[k].I, want)
				break
			}
		}
	}
}
