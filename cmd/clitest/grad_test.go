package clitest

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
)

// --grad-input writes d(mean cross-entropy)/d(input) matching PyTorch's
// (computed in float64) within 1e-3 relative, for every fixture model and
// whatever the chunking.
func TestEvalGradInput(t *testing.T) {
	for _, c := range []struct{ model, golden string }{
		{"mnist_vit_op14.onnx", "mnist_vit"}, {"mnist_vit_op17.onnx", "mnist_vit"},
		{"tv_vit_op14.onnx", "tv_vit"}, {"hf_vit_op16.onnx", "hf_vit"},
	} {
		dir := t.TempDir()
		g := func(f string) string { return testutil.Fixture("golden", c.golden, f) }
		want, err := npy.ReadFile(g("grad_input.npy"))
		if err != nil {
			t.Fatal(err)
		}
		for _, batch := range []string{"32", "2"} {
			succeeds(t, hyperat(t, dir, "hyperat-eval", testutil.Fixture("models", c.model), "--input", g("input.npy"),
				"--labels", g("labels.npy"), "--grad-input", "g.npy", "--batch", batch))
			got, err := npy.ReadFile(filepath.Join(dir, "g.npy"))
			if err != nil {
				t.Fatal(err)
			}
			if e := testutil.MaxAbsDiff(got.F, want.F) / testutil.MaxAbs(want.F); fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) || e > 1e-3 {
				t.Errorf("%s batch %s: relative error %g (shape %v, want %v)", c.model, batch, e, got.Shape, want.Shape)
			}
		}
	}
}

// Bad labels: out of range, float, wrong count; labels without --grad-input.
func TestEvalGradInputBadLabels(t *testing.T) {
	path, _ := model(t)
	dir := t.TempDir()
	in := testutil.Fixture("golden", "tv_vit", "input.npy")
	x, _ := npy.ReadFile(in)
	n := x.Shape[0]
	bad := map[string]*graph.Tensor{
		"range.npy": graph.I64([]int{n}, make([]int64, n)),
		"float.npy": graph.F32([]int{n}, make([]float32, n)),
		"count.npy": graph.I64([]int{n + 1}, make([]int64, n+1)),
	}
	bad["range.npy"].I[1] = 10
	for name, v := range bad {
		if err := npy.WriteFile(filepath.Join(dir, name), v); err != nil {
			t.Fatal(err)
		}
	}
	fails(t, hyperat(t, dir, "hyperat-eval", path, "--input", in, "--labels", "range.npy", "--grad-input", "g.npy"), 1, "label 10", "10 classes")
	fails(t, hyperat(t, dir, "hyperat-eval", path, "--input", in, "--labels", "float.npy", "--grad-input", "g.npy"), 1, "int64")
	fails(t, hyperat(t, dir, "hyperat-eval", path, "--input", in, "--labels", "count.npy", "--grad-input", "g.npy"), 1, "int64 labels of shape")
	fails(t, hyperat(t, dir, "hyperat-eval", path, "--input", in, "--labels", "range.npy", "--logits", "y.npy"), 2, "go together")
}
