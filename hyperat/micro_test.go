package hyperat

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/dist"
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

// Accumulate over contributions in order gives dist.SumInOrder's bits,
// the sign of zero included (a first contribution of -0 stays -0, where
// 0 + -0 would be +0), and the group's flattened form maps back to the
// same tensors.
func TestAccumulateIsSumInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	shape := func(r, c int) *graph.Tensor { return graph.NewTensor(graph.Float32, []int{r, c}) }
	mk := func() *Params {
		return &Params{A: []*graph.Tensor{shape(2, 3)}, B: []*graph.Tensor{shape(4, 2)}, Train: []*graph.Tensor{shape(3, 3)}}
	}
	var contribs []*Params
	var parts []dist.Part
	for k := range 5 {
		p := mk()
		for _, ts := range p.tensors() {
			for i := range ts.F {
				if i%3 == 0 { // -0 in every contribution: the sum is -0
					ts.F[i] = float32(math.Copysign(0, -1))
				} else {
					ts.F[i] = float32(rng.NormFloat64() * float64(int(1)<<rng.IntN(16)))
				}
			}
		}
		contribs = append(contribs, p)
		parts = append(parts, dist.Part{Index: k, Data: p.Flat()})
	}
	sum := mk()
	for k, p := range contribs {
		Accumulate(sum, p, k == 0)
	}
	want, err := dist.SumInOrder(parts, len(parts))
	if err != nil {
		t.Fatal(err)
	}
	got := sum.Flat()
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want.Data[i]) {
			t.Fatalf("value %d: %g (%08x), dist.SumInOrder %g (%08x)", i, got[i], math.Float32bits(got[i]), want.Data[i], math.Float32bits(want.Data[i]))
		}
	}
	back := mk()
	if err := back.SetFlat(want.Data); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Flat(), got) {
		t.Fatal("SetFlat does not invert Flat")
	}
	if err := back.SetFlat(want.Data[1:]); err == nil {
		t.Fatal("SetFlat took a gradient of the wrong size")
	}
}

// A group's shares of the validation split are its batches dealt out in
// turn: together every image once, each batch whole.
func TestBatchShare(t *testing.T) {
	idx := make([]int, 23)
	for i := range idx {
		idx[i] = 100 + i
	}
	for _, size := range []int{1, 2, 3, 5} {
		var all []int
		for r := range size {
			s := batchShare(idx, 4, r, size)
			for lo := 0; lo < len(s); lo += 4 {
				b := s[lo:min(lo+4, len(s))]
				if (b[0]-100)%4 != 0 || (b[0]-100)/4%size != r {
					t.Fatalf("size %d rank %d: a batch starts at %d", size, r, b[0])
				}
			}
			all = append(all, s...)
		}
		slices.Sort(all)
		if !slices.Equal(all, idx) {
			t.Fatalf("size %d: shares %v", size, all)
		}
	}
}
