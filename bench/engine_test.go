// Package bench holds the engine's benchmarks; bench/run.sh runs them beside
// their PyTorch counterparts and prints the ratios (docs/BENCHMARKS.md).
package bench

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/model"
)

// benchModel is the fixture MNIST ViT (the reference model of METHOD.md's
// table), or the shared timm export when the fixture is absent.
func benchModel(b *testing.B) string {
	p := testutil.Fixture("models", "mnist_vit_op17.onnx")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if d := testutil.SharedModels(); d != "" {
		return filepath.Join(d, "timm_vit_c32_dynamo_op18.onnx")
	}
	b.Skip("no benchmark model")
	return ""
}

func randomBatch(n int, shape []int, seed uint64) *graph.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	x := graph.NewTensor(graph.Float32, append([]int{n}, shape...))
	for i := range x.F {
		x.F[i] = r.Float32()
	}
	return x
}

// One PGD step: forward plus the input gradient of the cross-entropy, batch 64.
func BenchmarkForwardInputGrad(b *testing.B) {
	c, err := model.Load(benchModel(b))
	if err != nil {
		b.Fatal(err)
	}
	x := randomBatch(64, c.InputShape(), 1)
	seed := func(l *graph.Tensor) *graph.Tensor { return graph.NewTensor(graph.Float32, l.Shape) }
	if _, _, err := c.InputGrad(x, seed); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.InputGrad(x, seed)
	}
	b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "samples/s")
}

type randomData struct {
	shape   []int
	classes int
}

func (d randomData) Batch(idx []int) (*graph.Tensor, []int, error) {
	x := randomBatch(len(idx), d.shape, uint64(idx[0]))
	y := make([]int, len(idx))
	for i, k := range idx {
		y[i] = k % d.classes
	}
	return x, y, nil
}

// One HyperAT iteration: a defense's 10-step attack and the update, batch 64.
func BenchmarkHyperATIteration(b *testing.B) {
	m, err := onnximport.Load(benchModel(b))
	if err != nil {
		b.Fatal(err)
	}
	in := m.Graph.Inputs[0].Shape
	shape := []int{in[1].N, in[2].N, in[3].N}
	cfg := hyperat.DefaultConfig()
	cfg.Iters, cfg.Eps = 1000, 0.1
	idx := make([]int, 6400)
	for i := range idx {
		idx[i] = i
	}
	tr, err := hyperat.NewTrainer(m, cfg, randomData{shape, 10}, idx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tr.Step(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Step(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "iters/s")
}
