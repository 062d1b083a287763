package export_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hyperat/hyperat/export"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/safetensors"
	"github.com/hyperat/hyperat/workspace"
)

// The hyperat-export command, built once for the tests that run it.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func exportBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hyperat-export")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hyperat-export")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/hyperat-export")
		cmd.Dir = testutil.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func runExport(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(exportBin(t), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// fails checks a failed run: the status, one line on stderr naming every
// want, no trace of a panic.
func fails(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\n%s", r.code, code, r)
	}
	line := strings.TrimSuffix(r.stderr, "\n")
	t.Log(line)
	if line == "" || strings.Contains(line, "\n") || !strings.HasPrefix(line, "hyperat-export: ") {
		t.Errorf("stderr is not one line:\n%s", r)
	}
	for _, bad := range []string{"goroutine", "panic"} {
		if strings.Contains(r.stderr+r.stdout, bad) {
			t.Errorf("output mentions %q:\n%s", bad, r)
		}
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("error line does not name %q:\n%s", w, line)
		}
	}
}

// A user's folder: vit.onnx and its tuned workspace .hyperat/.
func userFolder(t *testing.T) (dir string, tu *tuning) {
	t.Helper()
	dir = t.TempDir()
	_, data := decode(t, fixture(tvModel))
	src := writeFile(t, filepath.Join(dir, "vit.onnx"), data)
	ws, m := newWorkspace(t, src, filepath.Join(dir, workspace.DefaultDir))
	return dir, fakeTuning(t, filepath.Join(dir, workspace.DefaultDir), ws, m, 12)
}

func TestCLI(t *testing.T) {
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
		fmt.Sprintf("%d replaced", len(tu.weights)), "max |logit difference| 0 ", "batch 1 and 3",
		"pgdat, trades, mart", filepath.Join("adapters", "pgdat"), export.HeadFile} {
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

func TestCLIErrors(t *testing.T) {
	dir, _ := userFolder(t)
	ws := filepath.Join(dir, workspace.DefaultDir)
	before := snapshot(t, dir)
	ro := readOnlyDir(t)
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
			fails(t, runExport(t, dir, c.args...), c.code, c.want...)
		})
	}
	sameFiles(t, before, snapshot(t, dir))

	// a workspace without a tuning result
	os.RemoveAll(filepath.Join(ws, hyperat.ResultDir))
	fails(t, runExport(t, dir, "robust.onnx"), 1, "hyperat-tune")
	// a damaged tuning result
	os.MkdirAll(filepath.Join(ws, hyperat.ResultDir), 0o755)
	writeFile(t, filepath.Join(ws, hyperat.ResultDir, hyperat.ResultFile), []byte("{"))
	fails(t, runExport(t, dir, "robust.onnx"), 1, "damaged")
	if _, err := os.Stat(filepath.Join(dir, "robust.onnx")); err == nil {
		t.Errorf("a failed export wrote robust.onnx")
	}
}

// Damaged or non-finite tuned weights and damaged adapters are refused.
func TestCLIBadTuning(t *testing.T) {
	dir, tu := userFolder(t)
	td := filepath.Join(dir, workspace.DefaultDir, hyperat.ResultDir)
	wp, ap := filepath.Join(td, hyperat.WeightsFile), filepath.Join(td, hyperat.AdaptersFile)
	good, _ := os.ReadFile(wp)
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)-3] ^= 0xff
	writeFile(t, wp, damaged)
	fails(t, runExport(t, dir, "robust.onnx"), 1, hyperat.WeightsFile, "damaged")

	nan := byName(tu.weights)
	hw := nan[tu.head.Weight.Name].Clone()
	hw.F[0] = float32(math.Inf(1))
	nan[tu.head.Weight.Name] = hw
	if err := safetensors.WriteFile(wp, nan, nil); err != nil {
		t.Fatal(err)
	}
	fails(t, runExport(t, dir, "robust.onnx"), 1, tu.head.Weight.Name, "infinite")

	writeFile(t, wp, good)
	ad, _ := os.ReadFile(ap)
	writeFile(t, ap, ad[:len(ad)/2])
	fails(t, runExport(t, dir, "robust.onnx", "--adapters", "adapters"), 1, hyperat.AdaptersFile)
	fails(t, runExport(t, dir, "robust.onnx", "--unmerged"), 1, hyperat.AdaptersFile)
	for _, p := range []string{"robust.onnx", "adapters"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("a failed export wrote %s", p)
		}
	}
	// adapters that do not match the merged weights
	lora := map[string]*graph.Tensor{}
	for k, v := range tu.lora {
		lora[k] = v.Clone()
		for i := range lora[k].F {
			lora[k].F[i] *= 1.5
		}
	}
	if err := safetensors.WriteFile(ap, lora, nil); err != nil {
		t.Fatal(err)
	}
	fails(t, runExport(t, dir, "robust.onnx", "--adapters", "adapters"), 1, "disagree")
	succeeds := runExport(t, dir, "robust.onnx")
	if succeeds.code != 0 {
		t.Errorf("the merged export needs no adapters:\n%s", succeeds)
	}
}

// A collapsed tuning result is exported only with --force.
func TestCLICollapsed(t *testing.T) {
	dir, tu := userFolder(t)
	tu.res.Collapsed = true
	js, err := json.Marshal(tu.res)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, workspace.DefaultDir, hyperat.ResultDir, hyperat.ResultFile), js)
	fails(t, runExport(t, dir, "robust.onnx"), 1, "collapsed", "--force")
	if _, err := os.Stat(filepath.Join(dir, "robust.onnx")); err == nil {
		t.Errorf("a refused export wrote robust.onnx")
	}
	if r := runExport(t, dir, "robust.onnx", "--force"); r.code != 0 {
		t.Errorf("--force:\n%s", r)
	}
}
