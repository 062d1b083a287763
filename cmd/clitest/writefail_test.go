package clitest

// Writes that fail (a full disk, a read-only workspace) and files that cannot
// be read, with the commands run under the limits of limits_test.go.

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/workspace"
)

// noTemp checks that no temporary file or folder of an atomic write is left in dir.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", filepath.Join(dir, e.Name()))
		}
	}
}

// without is a snapshot less one file.
func without(files map[string]string, path string) map[string]string {
	out := map[string]string{}
	for p, b := range files {
		if p != path {
			out[p] = b
		}
	}
	return out
}

// tuneOK runs a tuning that must finish (a tiny run may collapse; it still
// writes its result).
func tuneOK(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := hyperat(t, dir, "hyperat-tune", args...)
	if r.code != 0 && !atChance(r.stderr) {
		t.Fatalf("tune failed:\n%s", r)
	}
	return r
}

// A full disk: every command that writes fails with one line when a write
// fails partway (RLIMIT_FSIZE stands in for the full disk, see
// limits_test.go), and what was written before stays whole: no half
// workspace, the previous checkpoint, an older export, an older logits file.
// With room again the same commands go on.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	src := testutil.Fixture("models", "hf_vit_op16.onnx")
	st, err := os.Stat(src)
	if err != nil {
		t.Skip(err)
	}
	small := limits{fileSize: st.Size() / 3}
	ws := filepath.Join(dir, "ws")

	// import: the model's copy does not fit, and no workspace is left
	fails(t, hyperatLimited(t, dir, small, "hyperat-import", src, "--workspace", "ws"), 1, "model.onnx", "file too large")
	noWorkspace(t, ws)
	noTemp(t, ws)
	succeeds(t, hyperat(t, dir, "hyperat-import", src, "--workspace", "ws"))
	// importing again over the workspace changes nothing when it fails
	before := snapshot(t, ws)
	fails(t, hyperatLimited(t, dir, small, "hyperat-import", src, "--workspace", "ws"), 1, "model.onnx", "file too large")
	sameFiles(t, before, snapshot(t, ws))
	noTemp(t, ws)

	// tune: a run stopped at iteration 2 of 4 is resumed and its next
	// checkpoint does not fit; the state and the checkpoint of iteration 2
	// stay as they were (metrics.jsonl gains the line of iteration 3)
	tuneOK(t, dir, append(tuneArgs("ws"), "--iters", "2")...)
	state, err := workspace.ReadState(ws)
	if err != nil {
		t.Fatal(err)
	}
	state.Config.Iters = 4
	js, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := fsx.WriteFile(filepath.Join(ws, "state.json"), append(js, '\n')); err != nil {
		t.Fatal(err)
	}
	ck, err := os.Stat(filepath.Join(ws, state.Tensors))
	if err != nil {
		t.Fatal(err)
	}
	metrics := filepath.Join(ws, "metrics.jsonl")
	before = without(snapshot(t, ws), metrics)
	r := hyperatLimited(t, dir, limits{fileSize: ck.Size() / 2}, "hyperat-tune", append(tuneArgs("ws"), "--resume")...)
	fails(t, r, 1, "checkpoint-000003", "file too large")
	sameFiles(t, before, without(snapshot(t, ws), metrics))
	noTemp(t, ws)
	r = tuneOK(t, dir, append(tuneArgs("ws"), "--resume")...)
	if !strings.Contains(r.stdout, "from iteration 2 of 4") {
		t.Errorf("the resumed run did not start at iteration 2:\n%s", r)
	}
	if st, err := workspace.ReadState(ws); err != nil || st.Iteration != 4 {
		t.Errorf("after the resumed run: %v %+v", err, st)
	}

	// export: the model does not fit; an older export stays
	out := write(t, filepath.Join(dir, "robust.onnx"), []byte("an older export"))
	before = snapshot(t, ws)
	fails(t, hyperatLimited(t, dir, small, "hyperat-export", "robust.onnx", "--workspace", "ws", "--force"), 1, "robust.onnx", "file too large")
	if b, _ := os.ReadFile(out); string(b) != "an older export" {
		t.Errorf("a failed export changed robust.onnx")
	}
	sameFiles(t, before, snapshot(t, ws))
	noTemp(t, dir)

	// eval: the logits do not fit; the older file stays
	y := write(t, filepath.Join(dir, "y.npy"), []byte("older logits"))
	in := testutil.Fixture("golden", "hf_vit", "input.npy")
	fails(t, hyperatLimited(t, dir, limits{fileSize: 100}, "hyperat-eval", src, "--input", in, "--logits", "y.npy"), 1, "y.npy", "file too large")
	if b, _ := os.ReadFile(y); string(b) != "older logits" {
		t.Errorf("a failed eval changed y.npy")
	}
	noTemp(t, dir)
}

// chmodAll sets the mode of every folder under root (and root) to dirMode and
// of every file to fileMode, and restores 0755 and 0644 when the test ends.
func chmodAll(t *testing.T, root string, dirMode, fileMode fs.FileMode) {
	t.Helper()
	var dirs, files []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		} else if err == nil {
			files = append(files, p)
		}
		return nil
	})
	for _, f := range files {
		os.Chmod(f, fileMode)
	}
	for _, d := range dirs {
		os.Chmod(d, dirMode)
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			os.Chmod(d, 0o755)
		}
		for _, f := range files {
			os.Chmod(f, 0o644)
		}
	})
}

// A read-only workspace: import, and tune starting over, fail with one line
// naming the cause and change nothing; export, which only reads the
// workspace, still works.
func TestReadOnlyWorkspace(t *testing.T) {
	dir := t.TempDir()
	importTo(t, dir, "ws")
	tuneOK(t, dir, append(tuneArgs("ws"), "--iters", "2")...)
	ws := filepath.Join(dir, "ws")
	chmodAll(t, ws, 0o555, 0o444)
	if writableUnderLimits(t, ws) {
		t.Skip("a folder of mode 0555 is writable to the commands here")
	}
	before := snapshot(t, ws)
	src := testutil.Fixture("models", "hf_vit_op16.onnx")
	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-import", src, "--workspace", "ws"), 1, "ws", "permission denied")
	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-import", testutil.Fixture("models", "hf_vit_op15.onnx"), "--workspace", "ws", "--force"), 1, "ws", "permission denied")
	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-tune", append(tuneArgs("ws"), "--force")...), 1, "ws", "permission denied")
	sameFiles(t, before, snapshot(t, ws))
	r := hyperatLimited(t, dir, limits{}, "hyperat-export", "robust.onnx", "--workspace", "ws", "--force")
	succeeds(t, r)
	sameFiles(t, before, snapshot(t, ws))
}

// Files the commands may not read (mode 0, the permission override of root
// given up, see limits_test.go): the model, a dataset file, the workspace's
// manifest, an .npy input. Each is one line naming the file.
func TestUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	importTo(t, dir, "ws")
	probe := filepath.Join(dir, "probe")
	os.Mkdir(probe, 0o555)
	t.Cleanup(func() { os.Chmod(probe, 0o755) })
	if writableUnderLimits(t, probe) {
		t.Skip("permission bits do not bind the commands here")
	}

	model := filepath.Join(dir, "vit.onnx")
	b, _ := os.ReadFile(testutil.Fixture("models", "hf_vit_op16.onnx"))
	write(t, model, b)
	data := filepath.Join(dir, "mnist")
	os.Mkdir(data, 0o755)
	for _, f := range []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		b, err := os.ReadFile(testutil.Fixture("mnist", f))
		if err != nil {
			t.Skip(err)
		}
		write(t, filepath.Join(data, f), b)
	}
	in := filepath.Join(dir, "x.npy")
	b, _ = os.ReadFile(testutil.Fixture("golden", "hf_vit", "input.npy"))
	write(t, in, b)
	locked := func(p string) {
		os.Chmod(p, 0)
		t.Cleanup(func() { os.Chmod(p, 0o644) })
	}
	locked(model)
	locked(filepath.Join(data, "train-images-idx3-ubyte.gz"))
	locked(in)

	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-import", model, "--workspace", "ws2"), 1, "vit.onnx", "permission denied")
	noWorkspace(t, filepath.Join(dir, "ws2"))
	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-tune", "--workspace", "ws", "--data", data), 1, "train-images-idx3-ubyte.gz", "permission denied")
	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-eval", testutil.Fixture("models", "hf_vit_op16.onnx"), "--input", in, "--logits", "y.npy"), 1, "x.npy", "permission denied")
	if _, err := os.Stat(filepath.Join(dir, "y.npy")); err == nil {
		t.Errorf("a failed eval wrote y.npy")
	}
	locked(filepath.Join(dir, "ws", workspace.ManifestFile))
	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-tune", "--workspace", "ws", "--data", testutil.Fixture("mnist")), 1, workspace.ManifestFile, "permission denied")
	fails(t, hyperatLimited(t, dir, limits{}, "hyperat-export", "robust.onnx", "--workspace", "ws"), 1, workspace.ManifestFile, "permission denied")
}
