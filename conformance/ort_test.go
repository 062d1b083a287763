package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
)

// ortRunner returns the command line that runs onnxruntime, or skips the test
// with how to install it.
func ortRunner(t *testing.T) (node, script string) {
	t.Helper()
	const install = "cd fixtures/ort && npm install --ignore-scripts"
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("node is not installed: onnxruntime conformance needs Node.js and then `%s`", install)
	}
	if _, err := os.Stat(testutil.Fixture("ort", "node_modules", "onnxruntime-node")); err != nil {
		t.Skipf("onnxruntime-node is not installed: run `%s`", install)
	}
	return node, testutil.Fixture("ort", "run.mjs")
}

// ort runs onnxruntime on x and returns the first output.
func ort(t *testing.T, node, script, model string, x *graph.Tensor) *graph.Tensor {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.npy"), filepath.Join(dir, "out.npy")
	if err := npy.WriteFile(in, x); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, script, model, in, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("onnxruntime: %v: %s", err, strings.TrimSpace(string(b)))
	}
	y, err := npy.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// Every fixture model, and the shared models when present, gives the logits
// onnxruntime gives within 1e-4: on the golden input, on one random image and
// on a batch of five.
func TestMatchesOnnxRuntime(t *testing.T) {
	node, script := ortRunner(t)
	models := append(fixtureModels(t), sharedModels(t)...)
	if len(models) == 0 {
		t.Skip("no fixture models (fixtures/models/*.onnx)")
	}
	for i, tm := range models {
		t.Run(tm.name, func(t *testing.T) {
			t.Parallel()
			m, err := onnximport.Load(tm.path)
			if err != nil {
				t.Fatal(err)
			}
			type input struct {
				name string
				x    *graph.Tensor
			}
			inputs := []input{
				{"batch 1", randomPixels(t, m, 1, uint64(2*i+1))},
				{"batch 5", randomPixels(t, m, 5, uint64(2*i+2))},
			}
			if tm.input != nil {
				inputs = append(inputs, input{fmt.Sprintf("golden batch %d", tm.input.Shape[0]), tm.input})
			}
			for _, in := range inputs {
				name, x := in.name, in.x
				got := forward(t, m, x)
				want := ort(t, node, script, tm.path, x)
				if !sameShape(got.Shape, want.Shape) {
					t.Fatalf("%s: logits %v, onnxruntime %v", name, got.Shape, want.Shape)
				}
				d := testutil.MaxAbsDiff(got.F, want.F)
				t.Logf("%s: max abs diff from onnxruntime %.3g", name, d)
				if d > tol {
					t.Errorf("%s: logits differ from onnxruntime's by %g (> %g)", name, d, tol)
				}
			}
		})
	}
}
