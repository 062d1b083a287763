package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/model"
)

// benchModel is the fixture MNIST ViT (the reference model of METHOD.md's
// table), or the shared timm export when the fixture is absent.
func benchModel(b testing.TB) string {
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

func benchInputGrad(b *testing.B, path string, batch int) {
	c, err := model.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	x := RandomBatch(batch, c.InputShape(), 1)
	seed := CESeed(Labels(batch, c.Classes()))
	if _, _, err := c.InputGrad(x, seed); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := c.InputGrad(x, seed); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// One PGD step: forward plus the input gradient of the cross-entropy, batch 64.
func BenchmarkForwardInputGrad(b *testing.B) {
	benchInputGrad(b, benchModel(b), 64)
}

// One HyperAT iteration: a defense's 10-step attack and the update, batch 64,
// the defense drawn at random each iteration (as in training).
func BenchmarkHyperATIteration(b *testing.B) {
	benchHyperAT(b, []string{"pgdat", "trades", "mart"})
}

// One HyperAT iteration of each defense alone (their costs differ: TRADES
// and MART also run the model on the clean images).
func BenchmarkHyperATDefense(b *testing.B) {
	for _, d := range []string{"pgdat", "trades", "mart"} {
		b.Run(d, func(b *testing.B) { benchHyperAT(b, []string{d}) })
	}
}

func benchHyperAT(b *testing.B, defenses []string) {
	tr, err := NewTrainer(benchModel(b), HyperATConfig(defenses, 0.1, 64))
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

// ViT-B/16 at 224x224: forward plus input gradient at batch 8
// (HYPERAT_VITB_BATCH to change it). The model is not in the repository
// (330 MB): bench/run.sh exports torchvision's vit_b_16 and sets
// HYPERAT_VITB to its path; without it the benchmark skips.
func BenchmarkViTB16InputGrad(b *testing.B) {
	p := os.Getenv("HYPERAT_VITB")
	if p == "" {
		b.Skip("HYPERAT_VITB is not set (bench/torch_vitb.py export PATH makes the model)")
	}
	batch := 8
	if s := os.Getenv("HYPERAT_VITB_BATCH"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("HYPERAT_VITB_BATCH=%q: want a positive integer", s)
		}
		batch = n
	}
	benchInputGrad(b, p, batch)
}

// The helpers the benchmarks and engine-bench share compute what their
// PyTorch twins compute.
func TestCESeed(t *testing.T) {
	l := graph.NewTensor(graph.Float32, []int{2, 3})
	copy(l.F, []float32{0, 0, 0, 1, 2, 3})
	s := CESeed([]int{0, 2})(l)
	// row 0: uniform softmax 1/3; minus one-hot; over the batch of 2
	want0 := []float32{(1.0/3 - 1) / 2, 1.0 / 6, 1.0 / 6}
	for j, w := range want0 {
		if d := s.F[j] - w; d > 1e-7 || d < -1e-7 {
			t.Fatalf("seed row 0 = %v, want %v", s.F[:3], want0)
		}
	}
	var sum float32
	for _, v := range s.F[3:] {
		sum += v
	}
	if sum > 1e-7 || sum < -1e-7 || s.F[5] >= 0 {
		t.Fatalf("seed row 1 = %v: want a zero sum and a negative entry at the label", s.F[3:])
	}
	x := RandomBatch(4, []int{1, 2, 2}, 7)
	for _, v := range x.F {
		if v < 0 || v >= 1 {
			t.Fatalf("pixel %v outside [0, 1)", v)
		}
	}
	if m := Median([]time.Duration{3, 1, 2}); m != 2 {
		t.Fatalf("median = %v, want 2", m)
	}
}

func TestMedianEven(t *testing.T) {
	if m := Median([]time.Duration{4, 1, 3, 2}); m != 2 {
		t.Fatalf("median = %v, want 2 (the mean of 2 and 3, truncated)", m)
	}
	if b := Best([]time.Duration{4, 1, 3}); b != 1 {
		t.Fatalf("best = %v, want 1", b)
	}
}
