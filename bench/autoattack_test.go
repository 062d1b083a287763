package bench

import (
	"testing"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/model"
)

// counting is a model that counts the rows (images, padding included) it
// runs forward only and forward plus input gradient: the work of an attack
// in passes, which on another model costs that model's time per pass.
type counting struct {
	attack.Model
	fwd, grad int
}

func (c *counting) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	c.fwd += x.Shape[0]
	return c.Model.Logits(x)
}

func (c *counting) InputGrad(x *graph.Tensor, seed func(*graph.Tensor) *graph.Tensor) (*graph.Tensor, *graph.Tensor, error) {
	c.grad += x.Shape[0]
	return c.Model.InputGrad(x, seed)
}

// The passes per image of each attack of the AutoAttack suite on images that
// resist it (the pretrained fixture at eps 0.02: all four attacks run their
// full budget on every image, the suite's worst case), reported as
// fwd/img (forward only) and grad/img (forward plus input gradient). The
// count does not depend on the model; docs/CLUSTER.md turns it into time
// with ViT-B/16's measured time per pass.
func BenchmarkAutoAttackPasses(b *testing.B) {
	m, err := model.Load(testutil.Fixture("models", "mnist_vit_op17.onnx"))
	if err != nil {
		b.Fatal(err)
	}
	ds, err := data.Open(testutil.Fixture("mnist"), data.Test)
	if err != nil {
		b.Fatal(err)
	}
	sh := m.InputShape()
	x, y, err := ds.View(sh[0], sh[1], sh[2]).Batch(data.Range(4))
	if err != nil {
		b.Fatal(err)
	}
	for _, a := range attack.NewAutoAttack().Attacks {
		b.Run(a.Name(), func(b *testing.B) {
			c := &counting{Model: m}
			for b.Loop() {
				res, err := a.Run(c, x, y, 0.02, attack.Seeds{Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				if res.Robust() != len(y) {
					b.Fatalf("%s fooled %d of %d images: the count is not of its full budget", a.Name(), len(y)-res.Robust(), len(y))
				}
			}
			n := float64(b.N * len(y))
			b.ReportMetric(float64(c.fwd)/n, "fwd/img")
			b.ReportMetric(float64(c.grad)/n, "grad/img")
		})
	}
}
