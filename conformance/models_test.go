package conformance

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
)

// tol is the largest absolute difference allowed on logits.
const tol = 1e-4

// testModel is one model file with the batch its golden logits were made for.
type testModel struct {
	name, path    string
	input, logits *graph.Tensor // golden; nil when the model has none
}

// fixtureFamily maps "fixtures/models/tv_vit_op14.onnx" to "tv_vit".
func fixtureFamily(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), ".onnx")
	if i := strings.LastIndex(base, "_op"); i > 0 {
		return base[:i]
	}
	return base
}

// fixtureModels lists fixtures/models/*.onnx with their goldens
// (fixtures/golden/<family>/{input,logits}.npy).
func fixtureModels(t *testing.T) []testModel {
	t.Helper()
	files, err := filepath.Glob(testutil.Fixture("models", "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	var out []testModel
	for _, f := range files {
		m := testModel{name: filepath.Base(f), path: f}
		dir := testutil.Fixture("golden", fixtureFamily(f))
		if in, err := npy.ReadFile(filepath.Join(dir, "input.npy")); err == nil {
			m.input = in
		}
		if lg, err := npy.ReadFile(filepath.Join(dir, "logits.npy")); err == nil {
			m.logits = lg
		}
		out = append(out, m)
	}
	return out
}

// sharedModels lists ../shared/models/*.onnx with their common golden, when present.
func sharedModels(t *testing.T) []testModel {
	t.Helper()
	dir := testutil.SharedModels()
	if dir == "" {
		return nil
	}
	in, lg := testutil.LoadSharedGolden(t, dir)
	files, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
	var out []testModel
	for _, f := range files {
		out = append(out, testModel{name: filepath.Base(f), path: f, input: in, logits: lg})
	}
	return out
}

// forward runs our compiled forward on x.
func forward(t *testing.T, m *onnximport.Model, x *graph.Tensor) *graph.Tensor {
	t.Helper()
	p, err := compile.Compile(m.Graph, compile.Options{Batch: x.Shape[0]})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Clone()
}

// randomPixels makes a batch of n inputs of the model's shape, uniform in [0,1).
func randomPixels(t *testing.T, m *onnximport.Model, n int, seed uint64) *graph.Tensor {
	t.Helper()
	in := m.Graph.Inputs[0]
	shape := []int{n}
	for _, d := range in.Shape[1:] {
		if d.N < 0 {
			t.Fatalf("input %s has a symbolic non-batch dim", in)
		}
		shape = append(shape, d.N)
	}
	x := graph.NewTensor(graph.Float32, shape)
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := range x.F {
		x.F[i] = rng.Float32()
	}
	return x
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Every fixture model reproduces the PyTorch golden logits within 1e-4.
func TestFixturesMatchPyTorch(t *testing.T) {
	models := fixtureModels(t)
	if len(models) == 0 {
		t.Skip("no fixture models (fixtures/models/*.onnx)")
	}
	for _, tm := range models {
		t.Run(tm.name, func(t *testing.T) {
			if tm.input == nil || tm.logits == nil {
				t.Fatalf("no golden input.npy and logits.npy in fixtures/golden/%s", fixtureFamily(tm.path))
			}
			m, err := onnximport.Load(tm.path)
			if err != nil {
				t.Fatal(err)
			}
			got := forward(t, m, tm.input)
			if !sameShape(got.Shape, tm.logits.Shape) {
				t.Fatalf("logits %v, golden %v", got.Shape, tm.logits.Shape)
			}
			d := testutil.MaxAbsDiff(got.F, tm.logits.F)
			t.Logf("max abs diff from PyTorch %.3g", d)
			if d > tol {
				t.Errorf("logits differ from PyTorch's by %g (> %g)", d, tol)
			}
		})
	}
}
