package workspace

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/safetensors"
)

// noData is a Source a trainer that never steps is made with.
type noData struct{}

func (noData) Batch([]int) (*graph.Tensor, []int, error) { return nil, nil, nil }

// trainer is a small HyperAT trainer on the hf fixture, its parameters and
// moments filled with values that depend on seed.
func trainer(t *testing.T, seed float32) *hyperat.Trainer {
	t.Helper()
	m, err := onnximport.Load(testutil.Fixture("models", "hf_vit_op16.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := hyperat.DefaultConfig()
	cfg.Iters, cfg.Batch, cfg.Rank, cfg.EmbedDim, cfg.Hidden = 4, 2, 2, 8, 16
	tr, err := hyperat.NewTrainer(m, cfg, noData{}, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range tr.Params {
		for j := range p.F {
			p.F[j] = seed + float32(j%7)
			tr.Opt.M[i].F[j] = seed * 2
			tr.Opt.V[i].F[j] = seed * 3
		}
	}
	return tr
}

// A checkpoint saved and loaded gives the trainer back, the latest
// checkpoint replaces the earlier one, and a damaged one is refused.
func TestCheckpoint(t *testing.T) {
	dir := t.TempDir()
	a := trainer(t, 1)
	for _, it := range []int{2, 3} {
		a.It, a.Opt.Step = it, it+10
		if err := SaveCheckpoint(dir, "sha", a.Snapshot()); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*.safetensors"))
	if len(files) != 1 || filepath.Base(files[0]) != "checkpoint-000003.safetensors" {
		t.Errorf("checkpoint files %v, want the latest alone", files)
	}
	st, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 1 || st.Iteration != 3 || st.AdamStep != 13 || st.ModelSHA256 != "sha" ||
		st.Tensors != "checkpoint-000003.safetensors" || st.Config.Rank != 2 {
		t.Errorf("state %+v", st)
	}
	b := trainer(t, 5)
	if err := LoadCheckpoint(dir, st, b); err != nil {
		t.Fatal(err)
	}
	if b.It != 3 || b.Opt.Step != 13 {
		t.Errorf("restored iteration %d, step %d", b.It, b.Opt.Step)
	}
	for i := range a.Params {
		if !slices.Equal(a.Params[i].F, b.Params[i].F) || !slices.Equal(a.Opt.M[i].F, b.Opt.M[i].F) || !slices.Equal(a.Opt.V[i].F, b.Opt.V[i].F) {
			t.Fatalf("%s differs after the checkpoint", a.Names[i])
		}
	}

	// a tensor file that lacks a tensor: the error names the file
	ts, _, err := safetensors.ReadFile(filepath.Join(dir, st.Tensors))
	if err != nil {
		t.Fatal(err)
	}
	delete(ts, "adam_v/"+a.Names[0])
	if err := safetensors.WriteFile(filepath.Join(dir, st.Tensors), ts, nil); err != nil {
		t.Fatal(err)
	}
	err = LoadCheckpoint(dir, st, b)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, st.Tensors)+": checkpoint lacks adam_v/") {
		t.Errorf("a checkpoint without a tensor: %v", err)
	}

	// state.json
	if _, err := ReadState(t.TempDir()); !os.IsNotExist(err) {
		t.Errorf("no state: %v", err)
	}
	for body, want := range map[string]string{
		`{`: "damaged checkpoint state (",
		`{"version": 2, "tensors": "checkpoint-000001.safetensors"}`:    "checkpoint version 2 is not supported",
		`{"version": 1, "tensors": "../checkpoint-000001.safetensors"}`: "damaged checkpoint state",
		`{"version": 1}`: "damaged checkpoint state",
	} {
		if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadState(dir)
		if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, StateFile)+": ") || !strings.Contains(err.Error(), want) {
			t.Errorf("state %s: %v, want %q", body, err, want)
		}
	}
}

// writeLines writes metrics.jsonl: records, then a torn line.
func writeLines(t *testing.T, dir string, recs []hyperat.Record, torn string) {
	t.Helper()
	var b []byte
	for _, r := range recs {
		js, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(b, js...), '\n')
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsFile), append(b, torn...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A continued run keeps the records before its iteration, drops the rest
// and a torn last line, appends new records and checkpoints.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	var recs []hyperat.Record
	for it := range 6 {
		recs = append(recs, hyperat.Record{Kind: "step", It: it, Loss: float64(it) + 0.5})
		if it%2 == 1 {
			recs = append(recs, hyperat.Record{Kind: "val", It: it + 1, ValClean: 0.5})
		}
	}
	writeLines(t, dir, recs, `{"kind":"step","it":6,"lo`)
	got, err := ReadMetrics(dir)
	if err != nil || len(got) != len(recs) {
		t.Fatalf("read %d records (%v), want %d without the torn line", len(got), err, len(recs))
	}
	r, err := OpenRun(dir, "sha", 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Append(hyperat.Record{Kind: "step", It: 3, Loss: 9}); err != nil {
		t.Fatal(err)
	}
	if err := r.Checkpoint(trainer(t, 1).Snapshot()); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = ReadMetrics(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, r := range got {
		kept = append(kept, r.Kind+string(rune('0'+r.It)))
	}
	if want := []string{"step0", "step1", "val2", "step2", "step3"}; !slices.Equal(kept, want) || got[4].Loss != 9 {
		t.Errorf("records %v, want %v and the new step", kept, want)
	}
	if st, err := ReadState(dir); err != nil || st.ModelSHA256 != "sha" {
		t.Errorf("the run's checkpoint: %+v, %v", st, err)
	}

	// a new run in an empty folder
	empty := t.TempDir()
	if _, err := ReadMetrics(empty); !os.IsNotExist(err) {
		t.Errorf("no metrics: %v", err)
	}
	r, err = OpenRun(empty, "sha", 0)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got, err := ReadMetrics(empty); err != nil || len(got) != 0 {
		t.Errorf("a new run's metrics: %v, %v", got, err)
	}
}

// ClearRun removes the run's files and the result, and nothing else.
func TestClearRun(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{StateFile, "checkpoint-000004.safetensors", MetricsFile, LossPlotFile, AccuracyPlotFile,
		ManifestFile, ModelFile, filepath.Join(ResultDir, ResultFile)} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ClearRun(dir)
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{ModelFile, ManifestFile}) {
		t.Errorf("left %v", left)
	}
}
