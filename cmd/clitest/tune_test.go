package clitest

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
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

// The whole pipeline through the commands: import, tune, export; the
// exported model evaluates.
func TestTuneExportPipeline(t *testing.T) {
	dir := t.TempDir()
	importTo(t, dir, "ws")
	r := hyperat(t, dir, "hyperat-tune", tuneArgs("ws")...)
	// a random-weight model may collapse; the run still completes and says so
	if r.code != 0 && !bytes.Contains([]byte(r.stderr), []byte("collapsed")) {
		t.Fatalf("tune failed:\n%s", r)
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
	if r.code != 0 && !bytes.Contains([]byte(r.stderr), []byte("collapsed")) {
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
		if c.sig == syscall.SIGINT && errb.Len() > 0 && !bytes.Contains(errb.Bytes(), []byte("--resume")) && !bytes.Contains(errb.Bytes(), []byte("collapsed")) {
			t.Fatalf("interrupted run said: %s", errb.String())
		}
		// resume until done (a kill before the first checkpoint starts over)
		args := append(tuneArgs(ws), "--resume")
		if _, err := os.Stat(filepath.Join(dir, ws, "state.json")); err != nil {
			args = append(tuneArgs(ws), "--force")
		}
		if _, err := os.Stat(filepath.Join(dir, ws, "tuned", "result.json")); err != nil {
			rr := hyperat(t, dir, "hyperat-tune", args...)
			if rr.code != 0 && !bytes.Contains([]byte(rr.stderr), []byte("collapsed")) {
				t.Fatalf("%v: resume failed:\n%s", c.sig, rr)
			}
		}
		sameWeights(t, want, finalWeights(t, filepath.Join(dir, ws)))
	}
}
