package clitest

// hyperat-export on a workspace with a fake tuning result: what it prints,
// what it refuses, and that a refusal writes nothing.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	hyperatpkg "github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/safetensors"
	"github.com/hyperat/hyperat/workspace"
)

// runExport runs hyperat-export in dir.
func runExport(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return hyperat(t, dir, "hyperat-export", args...)
}

// exportFails checks a failed hyperat-export (see fails) whose error line
// starts with the command's name.
func exportFails(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if !strings.HasPrefix(r.stderr, "hyperat-export: ") {
		t.Errorf("the error line does not start with the command's name:\n%s", r)
	}
	fails(t, r, code, want...)
}

// A user's folder: vit.onnx and its tuned workspace .hyperat/.
func userFolder(t *testing.T) (dir string, tu *exporttest.Tuning) {
	t.Helper()
	dir = t.TempDir()
	_, data := exporttest.Decode(t, exporttest.Fixture(exporttest.TVModel))
	src := exporttest.WriteFile(t, filepath.Join(dir, "vit.onnx"), data)
	ws, m := exporttest.NewWorkspace(t, src, filepath.Join(dir, workspace.DefaultDir))
	return dir, exporttest.FakeTuning(t, filepath.Join(dir, workspace.DefaultDir), ws, m, 12)
}

func TestExport(t *testing.T) {
	dir, tu := userFolder(t)
	r := runExport(t, dir, "robust.onnx", "--adapters", "adapters")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("export failed:\n%s", r)
	}
	t.Logf("\n%s", r.stdout)
	st, err := os.Stat(filepath.Join(dir, "robust.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"robust.onnx", fmt.Sprintf("%.1f KB", float64(st.Size())/1024),
		fmt.Sprintf("%d replaced", len(tu.Weights)), "max |logit difference| 0 ", "batch 1 and 3",
		"pgdat, trades, mart", filepath.Join("adapters", "pgdat"), "head.safetensors"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}
	r = runExport(t, dir, "lora.onnx", "--unmerged", "--defense", "mart")
	if r.code != 0 || !strings.Contains(r.stdout, "LoRA of mart") || !strings.Contains(r.stdout, "added") {
		t.Errorf("unmerged export:\n%s", r)
	}
	t.Logf("\n%s", r.stdout)
	r = runExport(t, dir, "--help")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: hyperat-export") || !strings.Contains(r.stdout, "examples:") {
		t.Errorf("--help:\n%s", r)
	}
}

func TestExportErrors(t *testing.T) {
	dir, _ := userFolder(t)
	ws := filepath.Join(dir, workspace.DefaultDir)
	before := snapshot(t, dir)
	ro := exporttest.ReadOnlyDir(t)
	empty := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"input model", []string{"vit.onnx"}, 1, []string{"vit.onnx", "the source model"}},
		{"workspace model", []string{filepath.Join(ws, workspace.ModelFile)}, 1, []string{"model.onnx", "refusing"}},
		{"read-only folder", []string{filepath.Join(ro, "robust.onnx")}, 1, []string{"robust.onnx", ro}},
		{"missing folder", []string{filepath.Join("no", "such", "robust.onnx")}, 1, []string{"robust.onnx", "does not exist"}},
		{"output is a folder", []string{ws}, 1, []string{"folder"}},
		{"missing workspace", []string{"robust.onnx", "--workspace", "nope"}, 1, []string{"nope", "hyperat-import"}},
		{"not a workspace", []string{"robust.onnx", "--workspace", empty}, 1, []string{"not a hyperat workspace"}},
		{"unknown defense", []string{"robust.onnx", "--unmerged", "--defense", "fgsm"}, 1, []string{"fgsm", "pgdat, trades, mart"}},
		{"no output", nil, 2, []string{"no output", "--help"}},
		{"two outputs", []string{"a.onnx", "b.onnx"}, 2, []string{"one output"}},
		{"defense alone", []string{"robust.onnx", "--defense", "mart"}, 2, []string{"--defense", "--unmerged"}},
		{"unknown flag", []string{"robust.onnx", "--merge"}, 2, []string{"--merge"}},
		{"empty adapters", []string{"robust.onnx", "--adapters", ""}, 2, []string{"--adapters"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			exportFails(t, runExport(t, dir, c.args...), c.code, c.want...)
		})
	}
	sameFiles(t, before, snapshot(t, dir))

	// a workspace without a tuning result
	os.RemoveAll(filepath.Join(ws, workspace.ResultDir))
	exportFails(t, runExport(t, dir, "robust.onnx"), 1, "hyperat-tune")
	// a damaged tuning result
	os.MkdirAll(filepath.Join(ws, workspace.ResultDir), 0o755)
	exporttest.WriteFile(t, filepath.Join(ws, workspace.ResultDir, workspace.ResultFile), []byte("{"))
	exportFails(t, runExport(t, dir, "robust.onnx"), 1, "damaged")
	if _, err := os.Stat(filepath.Join(dir, "robust.onnx")); err == nil {
		t.Errorf("a failed export wrote robust.onnx")
	}
}

// Damaged or non-finite tuned weights and damaged adapters are refused.
func TestExportBadTuning(t *testing.T) {
	dir, tu := userFolder(t)
	td := filepath.Join(dir, workspace.DefaultDir, workspace.ResultDir)
	wp, ap := filepath.Join(td, workspace.WeightsFile), filepath.Join(td, workspace.AdaptersFile)
	good, _ := os.ReadFile(wp)
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)-3] ^= 0xff
	exporttest.WriteFile(t, wp, damaged)
	exportFails(t, runExport(t, dir, "robust.onnx"), 1, workspace.WeightsFile, "damaged")

	nan := exporttest.ByName(tu.Weights)
	hw := nan[tu.Head.Weight.Name].Clone()
	hw.F[0] = float32(math.Inf(1))
	nan[tu.Head.Weight.Name] = hw
	if err := safetensors.WriteFile(wp, nan, nil); err != nil {
		t.Fatal(err)
	}
	exportFails(t, runExport(t, dir, "robust.onnx"), 1, tu.Head.Weight.Name, "infinite")

	exporttest.WriteFile(t, wp, good)
	ad, _ := os.ReadFile(ap)
	exporttest.WriteFile(t, ap, ad[:len(ad)/2])
	exportFails(t, runExport(t, dir, "robust.onnx", "--adapters", "adapters"), 1, workspace.AdaptersFile)
	exportFails(t, runExport(t, dir, "robust.onnx", "--unmerged"), 1, workspace.AdaptersFile)
	for _, p := range []string{"robust.onnx", "adapters"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("a failed export wrote %s", p)
		}
	}
	// adapters that do not match the merged weights
	lora := map[string]*graph.Tensor{}
	for k, v := range tu.LoRA {
		lora[k] = v.Clone()
		for i := range lora[k].F {
			lora[k].F[i] *= 1.5
		}
	}
	if err := safetensors.WriteFile(ap, lora, nil); err != nil {
		t.Fatal(err)
	}
	exportFails(t, runExport(t, dir, "robust.onnx", "--adapters", "adapters"), 1, "disagree")
	succeeds := runExport(t, dir, "robust.onnx")
	if succeeds.code != 0 {
		t.Errorf("the merged export needs no adapters:\n%s", succeeds)
	}
}

// A collapsed tuning result is exported only with --force.
func TestExportCollapsed(t *testing.T) {
	dir, tu := userFolder(t)
	tu.Res.Collapsed = true
	res := &hyperatpkg.Tuned{Result: tu.Res, Weights: tu.Weights, Adapters: tu.LoRA}
	if err := workspace.WriteResult(filepath.Join(dir, workspace.DefaultDir), res); err != nil {
		t.Fatal(err)
	}
	exportFails(t, runExport(t, dir, "robust.onnx"), 1, "collapsed", "--force")
	if _, err := os.Stat(filepath.Join(dir, "robust.onnx")); err == nil {
		t.Errorf("a refused export wrote robust.onnx")
	}
	if r := runExport(t, dir, "robust.onnx", "--force"); r.code != 0 {
		t.Errorf("--force:\n%s", r)
	}
}
