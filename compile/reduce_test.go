package compile

import (
	"math"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// ReduceL2 is sqrt(sum x^2) over the axes, computed here in float64 as the
// reference; on int64 the root is truncated; with noop_with_empty_axes and
// no axes it is the identity (negative values stay negative).
func TestReduceL2(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(2, 3))
	xi := g.AddInput("xi", graph.Int64, graph.StaticShape(2, 2))
	g.Outputs = []*graph.Value{
		op(g, "ReduceL2", graph.Attrs{"keepdims": int64(0)}, x, ci(g, 1)),
		op(g, "ReduceL2", graph.Attrs{"keepdims": int64(1)}, x, ci(g, -2)),
		op(g, "ReduceL2", graph.Attrs{"keepdims": int64(0)}, xi),
		op(g, "ReduceL2", graph.Attrs{"noop_with_empty_axes": int64(1)}, x),
	}
	in := graph.F32([]int{2, 3}, []float32{3, -4, 12, -0.5, 0, 0.25})
	outs := run(t, g, in, graph.I64([]int{2, 2}, []int64{1, -2, 3, 4}))
	for r := 0; r < 2; r++ {
		s := 0.0
		for c := 0; c < 3; c++ {
			s += float64(in.F[r*3+c]) * float64(in.F[r*3+c])
		}
		if got, want := outs[0].F[r], float32(math.Sqrt(s)); got != want {
			t.Errorf("rows: [%d] = %g, want %g", r, got, want)
		}
	}
	if !sameShape(outs[1].Shape, []int{1, 3}) {
		t.Fatalf("keepdims shape %v, want [1 3]", outs[1].Shape)
	}
	for c := 0; c < 3; c++ {
		a, b := float64(in.F[c]), float64(in.F[3+c])
		if got, want := outs[1].F[c], float32(math.Sqrt(a*a+b*b)); got != want {
			t.Errorf("columns: [%d] = %g, want %g", c, got, want)
		}
	}
	if i := outs[2]; i.DType != graph.Int64 || len(i.I) != 1 || i.I[0] != 5 { // sqrt(30) truncated
		t.Errorf("int64: %s %v, want [5]", i.DType, i.I)
	}
	for j, v := range in.F {
		if outs[3].F[j] != v {
			t.Errorf("noop: %v, want the input %v", outs[3].F, in.F)
			break
		}
	}
}

// The gradient of a zero vector's norm is 0, not NaN (PyTorch's choice), and
// the other rows get x g / |x|.
func TestReduceL2GradAtZero(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(2, 2))
	loss := op(g, "ReduceSum", graph.Attrs{"keepdims": int64(0)}, op(g, "ReduceL2", graph.Attrs{"keepdims": int64(0)}, x, ci(g, 1)))
	p, err := Compile(g, Options{Verify: true, Grad: &GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(graph.F32([]int{2, 2}, []float32{0, 0, 3, -4})); err != nil {
		t.Fatal(err)
	}
	want := []float32{0, 0, 0.6, -0.8}
	for i, v := range p.Grad(x).F {
		if math.Abs(float64(v-want[i])) > 1e-7 {
			t.Fatalf("gradient %v, want %v", p.Grad(x).F, want)
		}
	}
}
