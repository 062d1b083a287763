package clitest

// The hierarchical transformers (torchvision's Swin-T, Swin-S and MaxViT-T,
// shrunk) through the four commands as a user runs them, at a tiny size.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/npy"
	"github.com/hyperat/hyperat/safetensors"
	"github.com/hyperat/hyperat/workspace"
)

// archModels are the fixtures of the hierarchical architectures, with what
// hyperat-import must show for each (lines of its tables, spaces collapsed):
// blocks, adapted layers, the head, and the layers it lists but leaves alone.
var archModels = []struct {
	file string
	want []string
}{
	{"tv_swin_t_op14.onnx", append([]string{"blocks (4)", "head head 32 10 [out,in]"}, swinImport...)},
	{"tv_swin_t_op17.onnx", append([]string{"blocks (4)", "head head 32 10 [out,in]"}, swinImport...)},
	{"tv_swin_s_op14.onnx", append([]string{"blocks (6)", "5 features.5.1", "features.5.0.mlp.3 fc2 256 64",
		"head head 64 10 [out,in]", "features.4.reduction linear 128 64"}, swinImport...)},
	{"tv_swin_s_op17.onnx", append([]string{"blocks (6)", "5 features.5.1", "features.5.0.mlp.3 fc2 256 64",
		"head head 64 10 [out,in]", "features.4.reduction linear 128 64"}, swinImport...)},
	{"tv_swin_v2_t_op14.onnx", swinV2Import},
	{"tv_swin_v2_t_op17.onnx", swinV2Import},
	{"tv_maxvit_t_op14.onnx", maxvitImport},
	{"tv_maxvit_t_op17.onnx", maxvitImport},
}

// swinV2Import: Swin V2's qkv weight is applied functionally (its bias is
// computed), so the layer takes the name of its attention module.
var swinV2Import = []string{"blocks (4)", "3 features.3.1", "0 features.1.0.attn qkv 16 48 [in,out]",
	"2 features.3.0.attn.proj proj 32 32", "1 features.1.1.mlp.0 fc1 16 64", "3 features.3.1.mlp.3 fc2 128 32",
	"head head 32 10 [out,in]", "other layers, not adapted (2)", "features.0.0 conv 3 16 4x4 4x4 1",
	"features.2.reduction linear 64 32 - - -"}

var swinImport = []string{"3 features.3.1", "0 features.1.0.attn.qkv qkv 16 48 [in,out]",
	"2 features.3.0.attn.proj proj 32 32", "1 features.1.1.mlp.0 fc1 16 64", "3 features.3.1.mlp.3 fc2 128 32",
	"other layers, not adapted", "features.0.0 conv 3 16 4x4 4x4 1", "features.2.reduction linear 64 32 - - -"}

var maxvitImport = []string{"blocks (4) 0 blocks.0.layers.0.layers.window_attention", "3 blocks.1.layers.0.layers.grid_attention",
	"0 blocks.0.layers.0.layers.window_attention.attn_layer.1.to_qkv qkv 16 48",
	"3 blocks.1.layers.0.layers.grid_attention.attn_layer.1.merge proj 32 32",
	"2 blocks.1.layers.0.layers.window_attention.mlp_layer.1 fc1 32 128",
	"3 blocks.1.layers.0.layers.grid_attention.mlp_layer.3 fc2 128 32",
	"- classifier.5 head 32 10 [in,out]",
	"other layers, not adapted (15)", "stem.0.0 conv 3 16 3x3 2x2 1", "stem.1.0 conv 16 16 3x3 1x1 1",
	"blocks.0.layers.0.layers.MBconv.layers.conv_b.0 conv 64 64 3x3 2x2 64",
	"blocks.1.layers.0.layers.MBconv.layers.squeeze_excitation.fc1 conv 128 8 1x1 1x1 1",
	"classifier.3 linear 32 32 - - -"}

// Each model imports, tunes (two iterations of four images, one attack
// step), exports to the original graph with merged weights that
// onnxruntime runs as we do, and evaluates (clean and PGD-2 on 8 images).
func TestArchitecturesPipeline(t *testing.T) {
	for _, c := range archModels {
		t.Run(strings.TrimSuffix(c.file, ".onnx"), func(t *testing.T) {
			src := testutil.Fixture("models", c.file)
			if _, err := os.Stat(src); err != nil {
				t.Skipf("fixture model missing: %v", err)
			}
			dir := t.TempDir()
			r := hyperat(t, dir, "hyperat-import", src)
			succeeds(t, r)
			var lines []string
			for _, l := range strings.Split(r.stdout, "\n") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
			out := strings.Join(lines, "\n")
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("import output lacks %q:\n%s", w, r.stdout)
				}
			}
			archTune(t, dir)
			archExport(t, dir, src)
			archEval(t, dir)
		})
	}
}

// archTune runs a tiny HyperAT run; a random-weight model may collapse, and
// the run says so.
func archTune(t *testing.T, dir string) {
	t.Helper()
	r := hyperat(t, dir, "hyperat-tune", "--data", testutil.Fixture("mnist"), "--eps", "0.1", "--iters", "2",
		"--batch", "4", "--steps", "1", "--rank", "2", "--val", "8", "--val-steps", "1", "--eval-every", "2", "--seed", "3")
	if r.code != 0 && !atChance(r.stderr) {
		t.Fatalf("tune failed:\n%s", r)
	}
	for _, w := range []string{"tune      hyperat", "merged (uniform"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("tune output lacks %q:\n%s", w, r.stdout)
		}
	}
}

// archExport exports the tuning result and checks the file: the source's
// graph with the tuned weights in place (block layers and head changed),
// and logits that onnxruntime computes as hyperat-eval does.
func archExport(t *testing.T, dir, src string) {
	t.Helper()
	succeeds(t, hyperat(t, dir, "hyperat-export", "robust.onnx", "--force"))
	tuned, _, err := safetensors.ReadFile(filepath.Join(dir, workspace.DefaultDir, workspace.ResultDir, workspace.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	w := map[layers.WeightKey]*graph.Tensor{}
	for k, v := range tuned {
		w[layers.ParseWeightKey(k)] = v
	}
	srcProto, _ := exporttest.Decode(t, src)
	out := filepath.Join(dir, "robust.onnx")
	got, _ := exporttest.Decode(t, out)
	exporttest.CompareModels(t, srcProto, got, w)

	m := exporttest.Imported(t, srcProto, filepath.Dir(src))
	changed := map[string]bool{}
	for _, l := range exporttest.Targets(t, m) {
		nw := w[l.Key]
		if nw == nil {
			t.Fatalf("layer %s: no tuned weight %s", l.Name, l.Key)
		}
		if testutil.MaxAbsDiff(nw.F, l.Weight.Const.F) > 0 {
			changed[l.Kind] = true
		}
	}
	if !changed[layers.KindHead] || !changed[layers.KindQKV] || !changed[layers.KindFC2] {
		t.Errorf("tuning changed the weights of kinds %v only", changed)
	}

	x := exporttest.Pixels(exporttest.LoadClassifier(t, out), 3, 5)
	xp := filepath.Join(dir, "x.npy")
	if err := npy.WriteFile(xp, x); err != nil {
		t.Fatal(err)
	}
	succeeds(t, hyperat(t, dir, "hyperat-eval", "robust.onnx", "--input", xp, "--logits", "y.npy"))
	ours, err := npy.ReadFile(filepath.Join(dir, "y.npy"))
	if err != nil {
		t.Fatal(err)
	}
	ort := exporttest.ORTLogits(t, out, x)
	if d := testutil.MaxAbsDiff(ours.F, ort.F); d > 1e-4 || len(ours.F) != len(ort.F) {
		t.Errorf("robust.onnx: hyperat-eval and onnxruntime differ by %g", d)
	}
	if d := testutil.MaxAbsDiff(ort.F, exporttest.ORTLogits(t, src, x).F); d == 0 {
		t.Errorf("robust.onnx computes the source model's logits")
	}
}

// archEval evaluates the exported model on 8 MNIST test images converted to
// its input, clean and under PGD-2.
func archEval(t *testing.T, dir string) {
	t.Helper()
	r := hyperat(t, dir, "hyperat-eval", "robust.onnx", "--data", testutil.Fixture("mnist"), "--eps", "0.1",
		"--attacks", "clean,pgd-2", "--limit", "8", "--seed", "1", "--json", "report.json")
	succeeds(t, r)
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		N       int                `json:"n"`
		Clean   float64            `json:"clean_accuracy"`
		Results map[string]float64 `json:"results"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	pgd, ok := rep.Results["pgd-2"]
	if rep.N != 8 || !ok || pgd > rep.Clean {
		t.Errorf("report: %d images, clean %g, results %v", rep.N, rep.Clean, rep.Results)
	}
}
