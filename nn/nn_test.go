package nn_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/nn"
)

func randT(r *rand.Rand, shape ...int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = float32(r.NormFloat64())
	}
	return t
}

// The loss builders agree with direct float64 formulas.
func TestLossValues(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const batch, classes = 3, 4
	g := graph.New()
	p := g.AddInput("p", graph.Float32, graph.StaticShape(batch, classes))
	q := g.AddInput("q", graph.Float32, graph.StaticShape(batch, classes))
	oh := g.AddInput("onehot", graph.Float32, graph.StaticShape(batch, classes))
	g.Outputs = []*graph.Value{nn.CrossEntropy(g, p, oh), nn.KL(g, p, q), nn.Margin(g, p, oh), nn.MaxOtherProb(g, p, oh), nn.TrueClassProb(g, p, oh)}
	prog, err := compile.Compile(g, compile.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	P, Q := randT(r, batch, classes), randT(r, batch, classes)
	labels := []int{2, 0, 3}
	onehot := graph.NewTensor(graph.Float32, []int{batch, classes})
	for i, l := range labels {
		onehot.F[i*classes+l] = 1
	}
	outs, err := prog.Run(P, Q, onehot)
	if err != nil {
		t.Fatal(err)
	}
	softmax := func(z []float32) []float64 {
		m := math.Inf(-1)
		for _, v := range z {
			m = max(m, float64(v))
		}
		s := 0.0
		e := make([]float64, len(z))
		for i, v := range z {
			e[i] = math.Exp(float64(v) - m)
			s += e[i]
		}
		for i := range e {
			e[i] /= s
		}
		return e
	}
	var ce, kl float64
	for i, l := range labels {
		ps, qs := softmax(P.F[i*classes:(i+1)*classes]), softmax(Q.F[i*classes:(i+1)*classes])
		ce -= math.Log(ps[l]) / batch
		mo, mz := -1.0, math.Inf(-1)
		for k := range ps {
			kl += ps[k] * math.Log(ps[k]/qs[k]) / batch
			if k != l {
				mo = max(mo, ps[k])
				mz = max(mz, float64(P.F[i*classes+k]))
			}
		}
		check := func(name string, got float32, want float64) {
			if math.Abs(float64(got)-want) > 1e-5 {
				t.Errorf("%s[%d] = %g, want %g", name, i, got, want)
			}
		}
		check("margin", outs[2].F[i], mz-float64(P.F[i*classes+l]))
		check("max other prob", outs[3].F[i], mo)
		check("true class prob", outs[4].F[i], ps[l])
	}
	if math.Abs(float64(outs[0].F[0])-ce) > 1e-5 || math.Abs(float64(outs[1].F[0])-kl) > 1e-5 {
		t.Fatalf("CE %g (want %g), KL %g (want %g)", outs[0].F[0], ce, outs[1].F[0], kl)
	}
}
