package clitest

// hyperat-eval --data's report (--json), examples (--save-adv), state
// (--state: an interrupted run continues) and AutoAttack's checks.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
	"github.com/hyperat/hyperat/onnx"
)

// evalReport is what the tests read of a --json report.
type evalReport struct {
	Tool               string   `json:"tool"`
	Version            string   `json:"version"`
	Model              string   `json:"model"`
	ModelSHA256        string   `json:"model_sha256"`
	Kernels            string   `json:"kernels"`
	Norm               string   `json:"norm"`
	Eps                float64  `json:"eps"`
	N                  int      `json:"n"`
	Seed               uint64   `json:"seed"`
	Attacks            []string `json:"attacks"`
	CleanAccuracy      float64  `json:"clean_accuracy"`
	AutoAttackAccuracy *float64 `json:"autoattack_accuracy"`
	Suite              *struct {
		Version     string             `json:"version"`
		Attacks     []string           `json:"attacks"`
		RobustAfter map[string]float64 `json:"robust_after"`
	} `json:"autoattack"`
	Results  map[string]float64 `json:"results"`
	Warnings []string           `json:"warnings"`
	Images   []struct {
		Index     int             `json:"index"`
		Label     int             `json:"label"`
		CleanPred int             `json:"clean_pred"`
		Robust    map[string]bool `json:"robust"`
		AdvPred   map[string]int  `json:"adv_pred"`
		FooledBy  string          `json:"fooled_by"`
	} `json:"images"`
}

func readReport(t *testing.T, path string) (evalReport, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r evalReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r, b
}

func readNpy(t *testing.T, path string) *graph.Tensor {
	t.Helper()
	x, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// The report holds the settings, the model's SHA-256, the tool's version,
// the totals, and per image its index, label, clean prediction and outcome
// under each attack, which add up to the totals; --save-adv writes each
// attack's examples, within eps of the images, with their indices and labels.
func TestEvalReport(t *testing.T) {
	dir := t.TempDir()
	m := testutil.Fixture("models", "mnist_vit_op17.onnx")
	const n = 9
	r := hyperat(t, dir, "hyperat-eval", m, "--data", testutil.Fixture("mnist"), "--eps", "0.03", "--attacks", "clean,fgsm,pgd-3",
		"--limit", "9", "--batch", "4", "--seed", "5", "--json", "r.json", "--save-adv", "adv")
	succeeds(t, r)
	rep, _ := readReport(t, filepath.Join(dir, "r.json"))
	model, _ := os.ReadFile(m)
	sum := sha256.Sum256(model)
	if rep.Tool != "hyperat-eval" || rep.Version == "" || rep.ModelSHA256 != hex.EncodeToString(sum[:]) || rep.Model != "mnist_vit_op17.onnx" ||
		rep.Norm != "Linf" || rep.Eps != 0.03 || rep.N != n || rep.Seed != 5 || len(rep.Images) != n || rep.Warnings == nil ||
		strings.Join(rep.Attacks, ",") != "clean,fgsm,pgd-3" || rep.AutoAttackAccuracy != nil || rep.Suite != nil {
		t.Fatalf("report %+v", rep)
	}
	_, labels := mnistLabels(t, n)
	count := map[string]int{}
	for i, im := range rep.Images {
		if im.Index != i || im.Label != labels[i] || len(im.Robust) != 3 || len(im.AdvPred) != 2 || im.FooledBy != "" {
			t.Errorf("image %d: %+v", i, im)
		}
		for a, ok := range im.Robust {
			if ok {
				count[a]++
			}
			if a != "clean" && ok != (im.AdvPred[a] == im.Label && im.CleanPred == im.Label) {
				t.Errorf("image %d: robust under %s %v, but the example is classified %d (label %d)", i, a, ok, im.AdvPred[a], im.Label)
			}
		}
		if im.Robust["clean"] != (im.CleanPred == im.Label) {
			t.Errorf("image %d: clean %v, predicted %d, label %d", i, im.Robust["clean"], im.CleanPred, im.Label)
		}
	}
	for a, acc := range rep.Results {
		if acc != float64(count[a])/n {
			t.Errorf("%s: accuracy %v, the images say %d of %d", a, acc, count[a], n)
		}
	}
	if rep.CleanAccuracy != rep.Results["clean"] {
		t.Errorf("clean accuracy %v, results %v", rep.CleanAccuracy, rep.Results)
	}
	// the examples
	x := readNpy(t, filepath.Join(dir, "adv", "fgsm.npy"))
	idx := readNpy(t, filepath.Join(dir, "adv", "index.npy"))
	lab := readNpy(t, filepath.Join(dir, "adv", "labels.npy"))
	if _, err := os.Stat(filepath.Join(dir, "adv", "clean.npy")); err == nil {
		t.Error("--save-adv wrote clean.npy")
	}
	if len(x.Shape) != 4 || x.Shape[0] != n || x.Shape[1] != 1 || x.Shape[2] != 28 || len(idx.I) != n || len(lab.I) != n {
		t.Fatalf("saved shapes %v, %v, %v", x.Shape, idx.Shape, lab.Shape)
	}
	clean, _ := mnistLabels(t, n)
	for i := range idx.I {
		if idx.I[i] != int64(i) || lab.I[i] != int64(labels[i]) {
			t.Errorf("saved index %d, label %d for image %d", idx.I[i], lab.I[i], i)
		}
	}
	moved := 0.0
	for i, v := range x.F {
		d := math.Abs(float64(v) - float64(clean[i]))
		if !(d <= 0.03) || v < 0 || v > 1 {
			t.Fatalf("saved example element %d is %v, the image's %v: outside the ball or [0, 1]", i, v, clean[i])
		}
		moved = max(moved, d)
	}
	if moved < 0.02 {
		t.Errorf("the saved FGSM examples moved at most %v from the images", moved)
	}
	if _, err := os.Stat(filepath.Join(dir, "r.json.state")); err == nil {
		t.Error("the state is left after the run finished")
	}
	noTemp(t, dir)
	noTemp(t, filepath.Join(dir, "adv"))
}

// mnistLabels is the first n MNIST test images' pixels (as hyperat-eval
// reads them) and labels.
func mnistLabels(t *testing.T, n int) ([]float32, []int) {
	t.Helper()
	img := readGz(t, testutil.Fixture("mnist", "t10k-images-idx3-ubyte.gz"))[16:]
	lab := readGz(t, testutil.Fixture("mnist", "t10k-labels-idx1-ubyte.gz"))[8:]
	x := make([]float32, n*784)
	for i := range x {
		x[i] = float32(img[i]) / 255
	}
	y := make([]int, n)
	for i := range y {
		y[i] = int(lab[i])
	}
	return x, y
}

func readGz(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startEval starts hyperat-eval in dir without waiting for it.
func startEval(t *testing.T, dir string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "hyperat-eval"), args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// interrupt starts hyperat-eval, sends it sig once its state file is there
// (a batch is done), and checks that it stopped before the end.
func interrupt(t *testing.T, dir, state string, sig syscall.Signal, args ...string) {
	t.Helper()
	cmd, out := startEval(t, dir, args...)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, state)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no state file after 2 minutes:\n%s", out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(sig)
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the run finished before the signal came:\n%s", out)
	}
	if sig == syscall.SIGINT {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		last := lines[len(lines)-1]
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(last, "interrupted after") || !strings.Contains(last, "the same command continues") {
			t.Fatalf("exit %d after SIGINT, last line %q", cmd.ProcessState.ExitCode(), last)
		}
	}
	var st struct {
		Done int `json:"done"`
	}
	b, err := os.ReadFile(filepath.Join(dir, state))
	if err != nil || json.Unmarshal(b, &st) != nil || st.Done < 1 || st.Done >= 12 {
		t.Fatalf("state after the signal: %s (%v)", b, err)
	}
	t.Logf("stopped by %v after %d images", sig, st.Done)
}

// A run stopped by SIGINT, or killed, continues where it stopped when the
// same command runs again, and its report and examples equal those of a run
// never stopped, byte for byte; a state made for another evaluation is
// refused with one line, and stays.
func TestEvalResume(t *testing.T) {
	dir := t.TempDir()
	m := testutil.Fixture("models", "mnist_vit_op17.onnx")
	args := func(json, adv string, extra ...string) []string {
		a := []string{m, "--data", testutil.Fixture("mnist"), "--eps", "0.04", "--attacks", "clean,apgd-ce", "--limit", "12",
			"--batch", "2", "--seed", "3", "--json", json, "--save-adv", adv}
		return append(a, extra...)
	}
	succeeds(t, hyperat(t, dir, "hyperat-eval", args("whole.json", "whole")...))
	_, want := readReport(t, filepath.Join(dir, "whole.json"))
	wantAdv, _ := os.ReadFile(filepath.Join(dir, "whole", "apgd-ce.npy"))
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		name := "r" + sig.String()[:3]
		interrupt(t, dir, name+".json.state", sig, args(name+".json", name)...)
		if sig == syscall.SIGINT {
			// another eps, another model: refused, and the state stays
			fails(t, hyperat(t, dir, "hyperat-eval", args(name+".json", name, "--eps", "0.05")...), 1,
				name+".json.state", "eps 0.04 (now 0.05)", "remove it")
			other := args(name+".json", name)
			other[0] = testutil.Fixture("models", "hf_vit_op16.onnx")
			fails(t, hyperat(t, dir, "hyperat-eval", other...), 1, "another model")
			fails(t, hyperat(t, dir, "hyperat-eval", args(name+".json", name, "--batch", "3")...), 1, "--batch 2 (now 3)")
		}
		r := hyperat(t, dir, "hyperat-eval", args(name+".json", name)...)
		succeeds(t, r)
		if !strings.Contains(r.stdout, "images done before") {
			t.Errorf("the run after %v did not continue:\n%s", sig, r)
		}
		_, got := readReport(t, filepath.Join(dir, name+".json"))
		if !bytes.Equal(got, want) {
			t.Errorf("after %v: the report differs from the uninterrupted run's:\n%s\nwant\n%s", sig, got, want)
		}
		if adv, _ := os.ReadFile(filepath.Join(dir, name, "apgd-ce.npy")); !bytes.Equal(adv, wantAdv) {
			t.Errorf("after %v: the examples differ from the uninterrupted run's", sig)
		}
		if _, err := os.Stat(filepath.Join(dir, name+".json.state")); err == nil {
			t.Errorf("after %v: the state is left after the run finished", sig)
		}
	}
	// a file that is not a state
	write(t, filepath.Join(dir, "junk.state"), []byte("{}"))
	fails(t, hyperat(t, dir, "hyperat-eval", args("j.json", "j", "--state", "junk.state")...), 1, "junk.state", "not the state of an hyperat-eval run")
}

// Bad --json, --state and --save-adv paths are refused with one line before
// any attack runs.
func TestEvalBadOutputPaths(t *testing.T) {
	dir := t.TempDir()
	m := testutil.Fixture("models", "mnist_vit_op17.onnx")
	file := write(t, filepath.Join(dir, "file"), []byte("x"))
	base := []string{m, "--data", testutil.Fixture("mnist"), "--eps", "0.1", "--limit", "2"}
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--save-adv", file}, 1, []string{"--save-adv", "is a file, want a folder"}},
		{[]string{"--save-adv", filepath.Join(file, "sub")}, 1, []string{"--save-adv", "not a directory"}},
		{[]string{"--json", filepath.Join(dir, "nope", "r.json")}, 1, []string{"--json", "does not exist"}},
		{[]string{"--json", dir}, 1, []string{"--json", "is a folder"}},
		{[]string{"--state", filepath.Join(dir, "nope", "s")}, 1, []string{"--state", "does not exist"}},
		{[]string{"--json", "a.json", "--state", "a.json"}, 2, []string{"--json and --state"}},
	} {
		fails(t, hyperat(t, dir, "hyperat-eval", append(base, c.args...)...), c.code, c.want...)
	}
	fails(t, hyperat(t, dir, "hyperat-eval", m, "--input", "x.npy", "--logits", "y.npy", "--json", "r.json"), 2, "go with --data")
}

// threeClassData writes a 3-class dataset of 4x4 images in IDX form.
func threeClassData(t *testing.T, dir string) string {
	t.Helper()
	d := filepath.Join(dir, "three")
	os.Mkdir(d, 0o755)
	const n = 6
	img := make([]byte, n*16)
	for i := range img {
		img[i] = byte((i * 37) % 251)
	}
	lab := make([]byte, n)
	for i := range lab {
		lab[i] = byte(i % 3)
	}
	idxFile(t, filepath.Join(d, "t10k-images-idx3-ubyte"), []int{n, 4, 4}, img)
	idxFile(t, filepath.Join(d, "t10k-labels-idx1-ubyte"), []int{n}, lab)
	return d
}

// AutoAttack's checks print a warning line each before the attacks and go
// into the report: outputs that look like probabilities (a model ending in
// a softmax), and too few classes for the targeted attacks (a 3-class
// model: the suite leaves apgd-t out, fab-t attacks 2 targets). The
// randomized-model check is tested in package attack (an ONNX graph here
// has no random operator).
func TestEvalChecks(t *testing.T) {
	dir := t.TempDir()
	data := threeClassData(t, dir)
	mlp := mlpModel()
	b, err := proto.Marshal(mlp)
	if err != nil {
		t.Fatal(err)
	}
	plain := write(t, filepath.Join(dir, "mlp.onnx"), b)
	g := mlp.GetGraph()
	g.Node = append(g.Node, &onnx.NodeProto{OpType: proto.String("Softmax"), Name: proto.String("softmax"),
		Input: []string{"logits"}, Output: []string{"probs"}})
	g.Output[0].Name = proto.String("probs")
	if b, err = proto.Marshal(mlp); err != nil {
		t.Fatal(err)
	}
	soft := write(t, filepath.Join(dir, "soft.onnx"), b)
	for _, c := range []struct {
		model, attacks string
		want           []string
	}{
		{plain, "clean,pgd-3", nil},
		{soft, "clean,pgd-3", []string{"look like probabilities"}},
		{plain, "clean,autoattack", []string{"only 3 classes the targeted DLR loss cannot be used", "fab-t attack 9 target classes, but the model has only 2"}},
	} {
		r := hyperat(t, dir, "hyperat-eval", c.model, "--data", data, "--eps", "0.1", "--attacks", c.attacks, "--json", "r.json")
		succeeds(t, r)
		var warn []string
		for _, l := range strings.Split(r.stdout, "\n") {
			if w, ok := strings.CutPrefix(l, "warning: "); ok {
				warn = append(warn, w)
			}
		}
		rep, _ := readReport(t, filepath.Join(dir, "r.json"))
		if len(warn) != len(c.want) || len(rep.Warnings) != len(c.want) {
			t.Errorf("%s %s: warnings %q, report %q, want %q", filepath.Base(c.model), c.attacks, warn, rep.Warnings, c.want)
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(warn[i], w) || warn[i] != rep.Warnings[i] {
				t.Errorf("%s %s: warning %q (report %q), want %q", filepath.Base(c.model), c.attacks, warn[i], rep.Warnings[i], w)
			}
		}
		if c.want != nil && strings.Index(r.stdout, "warning: ") > strings.Index(r.stdout, "accuracy") {
			t.Errorf("the warnings come after the attacks:\n%s", r.stdout)
		}
	}
	fails(t, hyperat(t, dir, "hyperat-eval", plain, "--data", data, "--eps", "0.1", "--attacks", "apgd-t"), 1, "apgd-t needs at least 4 classes")
}
