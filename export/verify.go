package export

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/model"
)

// Tolerance is the largest absolute logit difference the check accepts
// between a written model and its reference. Both run through the same
// forward pass, so a merged export is expected to match exactly.
const Tolerance = 1e-4

// checkBatches are the batch sizes a model with a symbolic batch is checked
// at: one sample, and several (a fixed-batch model runs at its own).
var checkBatches = []int{1, 3}

// Check is the outcome of a verification.
type Check struct {
	Batches []int
	// MaxDiff is the largest |logit difference| seen over all batches.
	MaxDiff float64
}

// verify re-imports the model file at path and compares its logits with
// ref's on seeded random pixels in [0, 1].
func verify(path string, ref *model.Classifier, seed uint64) (*Check, error) {
	m, err := onnximport.Load(path)
	if err != nil {
		return nil, fmt.Errorf("the written model does not import again: %v", err)
	}
	c, err := model.New(m)
	if err != nil {
		return nil, fmt.Errorf("the written model does not run: %v", err)
	}
	if fmt.Sprint(c.InputShape()) != fmt.Sprint(ref.InputShape()) || c.Classes() != ref.Classes() {
		return nil, fmt.Errorf("the written model takes %v and gives %d logits, the reference %v and %d",
			c.InputShape(), c.Classes(), ref.InputShape(), ref.Classes())
	}
	batches := checkBatches
	if d := m.Graph.Inputs[0].Shape[0]; d.N > 0 {
		batches = []int{d.N}
	}
	rng := rand.New(rand.NewPCG(seed, 0x6578706f7274))
	ck := &Check{Batches: batches}
	for _, b := range batches {
		x := graph.NewTensor(graph.Float32, append([]int{b}, c.InputShape()...))
		for i := range x.F {
			x.F[i] = rng.Float32()
		}
		got, err := c.Logits(x)
		if err != nil {
			return nil, fmt.Errorf("running the written model at batch %d: %v", b, err)
		}
		want, err := ref.Logits(x)
		if err != nil {
			return nil, fmt.Errorf("running the reference model at batch %d: %v", b, err)
		}
		d := MaxAbsDiff(got.F, want.F)
		ck.MaxDiff = max(ck.MaxDiff, d)
		if !(d <= Tolerance) {
			return nil, fmt.Errorf("check failed: the written model's logits differ from the reference's by %.3g at batch %d (tolerance %g); nothing was written", d, b, Tolerance)
		}
	}
	return ck, nil
}

// MaxAbsDiff is max |a-b|, the distance the check measures: +Inf when the
// sizes differ or a NaN appears.
func MaxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if d != d {
			return math.Inf(1)
		}
		m = max(m, d)
	}
	return m
}
