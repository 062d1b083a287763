package hyperat

import (
	"fmt"
	"math"
	"testing"

	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

func mnistFixture(t *testing.T) (*onnximport.Model, *data.View) {
	t.Helper()
	m, err := onnximport.Load(testutil.Fixture("models", "mnist_vit_op17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.Open(testutil.Fixture("mnist"), data.Train)
	if err != nil {
		t.Fatal(err)
	}
	return m, ds.View(1, 28, 28)
}

// relErr is |a - b| / |b| in the L2 norm over all the tensors.
func relErr(a, b []*graph.Tensor) float64 {
	var d, n float64
	for i := range a {
		for j, v := range a[i].F {
			w := float64(b[i].F[j])
			d += (float64(v) - w) * (float64(v) - w)
			n += w * w
		}
	}
	return math.Sqrt(d / n)
}

// One step over 8 micro-batches of 8 images is one step over the batch of
// 64 up to float32 rounding: the loss, the gradient of every trained tensor
// (before clipping, by its norm, and its direction after) and the updated
// parameters, for every defense (TRADES' and MART's stacked clean and
// adversarial pass included) and every method. A contribution weighted
// wrongly, or random starts drawn per micro-batch instead of per image,
// is far outside the tolerance.
func TestMicroBatchesEqualTheBatch(t *testing.T) {
	m, view := mnistFixture(t)
	cases := []struct{ method, defense string }{
		{"hyperat", "pgdat"}, {"hyperat", "trades"}, {"hyperat", "mart"},
		{"lora", "trades"}, {"full", "mart"},
	}
	for _, c := range cases {
		t.Run(c.method+"_"+c.defense, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Method, cfg.Defenses, cfg.Batch, cfg.Steps, cfg.Iters, cfg.Eps, cfg.Seed = c.method, []string{c.defense}, 64, 2, 10, 0.1, 3
			cfg.EpsWarmup = 0
			var steps []Step
			var grads, params [][]*graph.Tensor
			for _, micro := range []int{0, 8} {
				cfg.Micro = micro
				tr, err := NewTrainer(m, cfg, view, indices(640))
				if err != nil {
					t.Fatal(err)
				}
				s, err := tr.Step()
				if err != nil {
					t.Fatal(err)
				}
				steps, grads, params = append(steps, s), append(grads, tr.grads), append(params, tr.Params)
			}
			whole, split := steps[0], steps[1]
			dl := math.Abs(split.Loss-whole.Loss) / whole.Loss
			dn := math.Abs(split.GradNorm-whole.GradNorm) / whole.GradNorm
			dg, dp := relErr(grads[1], grads[0]), relErr(params[1], params[0])
			t.Logf("loss %.6g vs %.6g (%.1e), grad norm %.6g vs %.6g (%.1e), gradient %.1e, parameters %.1e",
				split.Loss, whole.Loss, dl, split.GradNorm, whole.GradNorm, dn, dg, dp)
			for _, e := range []struct {
				what string
				err  float64
			}{{"loss", dl}, {"gradient norm", dn}, {"gradient", dg}, {"parameters", dp}} {
				if e.err > 1e-4 {
					t.Errorf("%s: 8 micro-batches of 8 differ from one batch of 64 by %.2e", e.what, e.err)
				}
			}
		})
	}
}

// MicroBatches covers the batch in order, the last one smaller.
func TestMicroBatches(t *testing.T) {
	got := fmt.Sprint(MicroBatches(10, 4), MicroBatches(8, 8), MicroBatches(3, 5))
	if want := "[{0 4} {4 8} {8 10}] [{0 8}] [{0 3}]"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
