package compile

import (
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// A linear layer on a batch ([b, m, k] x [k, n]) runs as one tall product;
// every element must equal the one computed by a product per batch entry,
// bit for bit, for plain and transposed weights.
func TestMatMulBatchAsOneProduct(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const b, m, k, n = 3, 50, 37, 29
	for _, tb := range []bool{false, true} {
		g := graph.New()
		x := g.AddInput("x", graph.Float32, graph.StaticShape(b, m, k))
		ws := []int{k, n}
		attrs := graph.Attrs{}
		if tb {
			ws = []int{n, k}
			attrs["transB"] = int64(1)
		}
		w := g.AddInput("w", graph.Float32, graph.StaticShape(ws...))
		g.Outputs = []*graph.Value{g.Op("MatMul", attrs, x, w)}
		p, err := Compile(g, Options{Verify: true})
		if err != nil {
			t.Fatal(err)
		}
		xt, wt := randTensor(r, []int{b, m, k}, -1, 1), randTensor(r, ws, -1, 1)
		outs, err := p.Run(xt, wt)
		if err != nil {
			t.Fatal(err)
		}
		ldb := n
		if tb {
			ldb = k
		}
		want := make([]float32, m*n)
		for i := 0; i < b; i++ {
			Gemm(false, tb, m, n, k, 1, xt.F[i*m*k:], k, wt.F, ldb, 0, want, n)
			for j, v := range want {
				if got := outs[0].F[i*m*n+j]; got != v {
					t.Fatalf("transB %v: batch %d element %d = %g, want %g", tb, i, j, got, v)
				}
			}
		}
	}
}
