// Package bench holds the engine's benchmarks: Go benchmarks (go test
// -bench), a command that times the same work for bench/run.sh
// (bench/cmd/engine-bench), and the helpers both use. bench/run.sh runs them
// beside their PyTorch counterparts (bench/torch_*.py) and prints the ratios;
// docs/BENCHMARKS.md has the figures.
//
// Every workload here has one PyTorch twin that does the same arithmetic on
// the same model:
//
//   - forward plus input gradient of the cross-entropy (one PGD step);
//   - one HyperAT iteration per defense (ten attack steps and the update);
//   - PGD-10 over the first images of the MNIST test set;
//   - forward plus input gradient of a ViT-B/16 at 224x224;
//   - one HyperAT iteration and PGD-10 on one batch of that ViT-B/16.
package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/loss"
)

// RandomBatch returns n images of the given [C, H, W] shape with pixels
// drawn uniformly from [0, 1), reproducibly from seed.
func RandomBatch(n int, shape []int, seed uint64) *graph.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	x := graph.NewTensor(graph.Float32, append([]int{n}, shape...))
	for i := range x.F {
		x.F[i] = r.Float32()
	}
	return x
}

// Labels returns n labels cycling through the classes: 0, 1, ..., classes-1, 0, ...
func Labels(n, classes int) []int {
	y := make([]int, n)
	for i := range y {
		y[i] = i % classes
	}
	return y
}

// CESeed returns the cotangent of the mean cross-entropy over the batch,
// dL/dlogits = (softmax(z) - onehot(y)) / N, computed in float64: what
// torch.nn.functional.cross_entropy's backward feeds into the model.
func CESeed(y []int) func(logits *graph.Tensor) *graph.Tensor {
	return func(l *graph.Tensor) *graph.Tensor {
		_, g := loss.MeanCE(l, y)
		return g
	}
}

// RandomData is a hyperat.Source of random images: the timing of an
// iteration does not depend on the pixels, and the PyTorch twin draws its
// own random images too.
type RandomData struct {
	Shape   []int // [C, H, W]
	Classes int
}

// Batch implements hyperat.Source.
func (d RandomData) Batch(idx []int) (*graph.Tensor, []int, error) {
	x := RandomBatch(len(idx), d.Shape, uint64(idx[0]))
	y := make([]int, len(idx))
	for i, k := range idx {
		y[i] = k % d.Classes
	}
	return x, y, nil
}

// HyperATConfig is the iteration the benchmarks time: the project's defaults
// (rank 8, alpha 16, embeddings 32, MLP 128, LoRA on qkv/proj/fc1/fc2, head
// trained, AdamW, clipping at 1, PGD-10 inner attack) with eps fixed at its
// target from the first iteration (no eps warm-up, so every timed iteration
// attacks at full strength) and the given defenses.
func HyperATConfig(defenses []string, eps float64, batch int) hyperat.Config {
	cfg := hyperat.DefaultConfig()
	cfg.Defenses = defenses
	cfg.Eps = eps
	cfg.EpsWarmup = 0
	cfg.Iters = 1000
	cfg.Batch = batch
	return cfg
}

// NewTrainer imports the model at path and prepares a HyperAT run on random
// images with the given configuration.
func NewTrainer(path string, cfg hyperat.Config) (*hyperat.Trainer, error) {
	m, err := onnximport.Load(path)
	if err != nil {
		return nil, err
	}
	in := m.Graph.Inputs[0].Shape
	if len(in) != 4 {
		return nil, fmt.Errorf("%s: input shape %v, want [N, C, H, W]", path, in)
	}
	shape := []int{in[1].N, in[2].N, in[3].N}
	idx := make([]int, 100*cfg.Batch)
	for i := range idx {
		idx[i] = i
	}
	// the number of classes does not change the cost of an iteration; the
	// trainer checks nothing against it, so 10 (MNIST, CIFAR-10) is fine
	return hyperat.NewTrainer(m, cfg, RandomData{shape, 10}, idx)
}

// Time runs f warm times untimed, then iters times, and returns the time of
// each timed call.
func Time(warm, iters int, f func() error) ([]time.Duration, error) {
	for i := 0; i < warm; i++ {
		if err := f(); err != nil {
			return nil, err
		}
	}
	ts := make([]time.Duration, 0, iters)
	for i := 0; i < iters; i++ {
		t0 := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		ts = append(ts, time.Since(t0))
	}
	return ts, nil
}

// Best and Median of a set of durations.
func Best(ts []time.Duration) time.Duration { return slices.Min(ts) }

// Median returns the median duration (the mean of the two middle ones for
// an even count).
func Median(ts []time.Duration) time.Duration {
	s := slices.Clone(ts)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
