package clitest

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/safetensors"
)

// tuneArgs is a tiny but complete HyperAT run on the MNIST subset.
func tuneArgs(ws string) []string {
	return []string{"--workspace", ws, "--data", testutil.Fixture("mnist"), "--eps", "0.1", "--iters", "8",
		"--batch", "8", "--steps", "1", "--rank", "2", "--val", "16", "--val-steps", "1",
		"--eval-every", "4", "--checkpoint-every", "1", "--seed", "3"}
}

func importTo(t *testing.T, dir, ws string) {
	t.Helper()
	succeeds(t, hyperat(t, dir, "hyperat-import", testutil.Fixture("models", "hf_vit_op16.onnx"), "--workspace", ws))
}

// finalWeights reads the tuning result's merged weights as raw bytes per key.
func finalWeights(t *testing.T, ws string) map[string][]float32 {
	t.Helper()
	w, _, err := safetensors.ReadFile(filepath.Join(ws, "tuned", "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for k, v := range w {
		out[k] = v.F
	}
	return out
}

func sameWeights(t *testing.T, a, b map[string][]float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d weights vs %d", len(a), len(b))
	}
	for k, x := range a {
		y := b[k]
		if len(x) != len(y) {
			t.Fatalf("%s: sizes differ", k)
		}
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s[%d]: %g vs %g", k, i, x[i], y[i])
			}
		}
	}
}

// atChance reports whether a tuning's error says that it ended near chance:
// it collapsed, or the model was at chance before tuning (a random-weight
// fixture), which the run still completes.
func atChance(stderr string) bool {
	return strings.Contains(stderr, "collapsed") || strings.Contains(stderr, "where the model was before tuning")
}

// The whole pipeline through the commands: import, tune, export; the
// exported model evaluates.
func TestTuneExportPipeline(t *testing.T) {
	dir := t.TempDir()
	importTo(t, dir, "ws")
	r := hyperat(t, dir, "hyperat-tune", tuneArgs("ws")...)
	// a random-weight model may collapse; the run still completes and says so
	if r.code != 0 && !atChance(r.stderr) {
		t.Fatalf("tune failed:\n%s", r)
	}
	// it says what it does before the first iteration ends: the memory
	// budget, the micro-batches, compiling, the accuracy it starts from
	// (at chance: said before tuning) and, after it, the time it takes
	for _, want := range []string{"memory    up to", "the whole batch of 8", "compile", "before tuning", "per iteration"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("tune did not say %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stderr, "where the model was before tuning") && !strings.Contains(r.stdout, "at chance before tuning") {
		t.Errorf("a model at chance ends at chance, but was not said to be at chance before tuning:\n%s", r)
	}
	// the plots of the metrics are next to them
	for _, f := range []string{"loss.png", "accuracy.png"} {
		b, err := os.ReadFile(filepath.Join(dir, "ws", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	args := []string{"robust.onnx", "--workspace", "ws"}
	if r.code != 0 {
		args = append(args, "--force")
	}
	succeeds(t, hyperat(t, dir, "hyperat-export", args...))
	succeeds(t, hyperat(t, dir, "hyperat-eval", "robust.onnx", "--input", testutil.Fixture("golden", "hf_vit", "input.npy"), "--logits", "y.npy"))
	// a second tune without --resume or --force is refused, the run kept
	before := snapshot(t, filepath.Join(dir, "ws"))
	fails(t, hyperat(t, dir, "hyperat-tune", tuneArgs("ws")...), 1, "--resume")
	sameFiles(t, before, snapshot(t, filepath.Join(dir, "ws")))
}

// Interrupted by SIGINT (finishing the step and checkpointing) or killed by
// SIGKILL at some point, then resumed, a run ends with the same weights as
// an uninterrupted one.
func TestInterruptAndResume(t *testing.T) {
	dir := t.TempDir()
	importTo(t, dir, "ref")
	r := hyperat(t, dir, "hyperat-tune", tuneArgs("ref")...)
	if r.code != 0 && !atChance(r.stderr) {
		t.Fatalf("tune failed:\n%s", r)
	}
	want := finalWeights(t, filepath.Join(dir, "ref"))
	for i, c := range []struct {
		sig   syscall.Signal
		after time.Duration
	}{{syscall.SIGINT, 1500 * time.Millisecond}, {syscall.SIGKILL, 2 * time.Second}, {syscall.SIGKILL, 3500 * time.Millisecond}} {
		ws := "ws" + string(rune('a'+i))
		importTo(t, dir, ws)
		cmd := exec.Command(filepath.Join(bin, "hyperat-tune"), tuneArgs(ws)...)
		cmd.Dir = dir
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(c.after)
		cmd.Process.Signal(c.sig)
		cmd.Wait()
		if c.sig == syscall.SIGINT && errb.Len() > 0 && !bytes.Contains(errb.Bytes(), []byte("--resume")) && !atChance(errb.String()) {
			t.Fatalf("interrupted run said: %s", errb.String())
		}
		// resume until done (a kill before the first checkpoint starts over)
		args := append(tuneArgs(ws), "--resume")
		if _, err := os.Stat(filepath.Join(dir, ws, "state.json")); err != nil {
			args = append(tuneArgs(ws), "--force")
		}
		if _, err := os.Stat(filepath.Join(dir, ws, "tuned", "result.json")); err != nil {
			rr := hyperat(t, dir, "hyperat-tune", args...)
			if rr.code != 0 && !atChance(rr.stderr) {
				t.Fatalf("%v: resume failed:\n%s", c.sig, rr)
			}
		}
		sameWeights(t, want, finalWeights(t, filepath.Join(dir, ws)))
	}
}
