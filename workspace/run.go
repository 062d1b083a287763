package workspace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/safetensors"
)

// The files of a tuning run in the workspace folder.
const (
	StateFile        = "state.json"
	MetricsFile      = "metrics.jsonl"
	LossPlotFile     = "loss.png"
	AccuracyPlotFile = "accuracy.png"
	// checkpoints is the pattern of the checkpoints' tensor files.
	checkpoints  = "checkpoint-*.safetensors"
	stateVersion = 1
)

// State is state.json, the JSON half of a checkpoint: where the run is, with
// what configuration, and which tensor file (by name) goes with it.
type State struct {
	Version     int            `json:"version"`
	Iteration   int            `json:"iteration"`
	AdamStep    int            `json:"adam_step"`
	Config      hyperat.Config `json:"config"`
	ModelSHA256 string         `json:"model_sha256"`
	Tensors     string         `json:"tensors"`
}

// SaveCheckpoint writes a snapshot of the run of the model modelSHA into the
// workspace dir: the tensors (a new file per iteration, which carries a
// checksum), then the state that names them, both atomically, then removes
// older tensor files. A crash at any point leaves the previous checkpoint or
// the new one whole.
func SaveCheckpoint(dir, modelSHA string, s hyperat.Snapshot) error {
	name := fmt.Sprintf("checkpoint-%06d.safetensors", s.Iteration)
	if err := safetensors.WriteFile(filepath.Join(dir, name), s.Tensors, map[string]string{"iteration": fmt.Sprint(s.Iteration)}); err != nil {
		return err
	}
	st := State{Version: stateVersion, Iteration: s.Iteration, AdamStep: s.AdamStep, Config: s.Config, ModelSHA256: modelSHA, Tensors: name}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := fsx.WriteFile(filepath.Join(dir, StateFile), append(b, '\n')); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, checkpoints))
	for _, f := range old {
		if filepath.Base(f) != name {
			os.Remove(f)
		}
	}
	return nil
}

// ReadState reads the workspace dir's checkpoint state, or returns an error
// that matches os.ErrNotExist when there is none.
func ReadState(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: damaged checkpoint state (%v)", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: checkpoint version %d is not supported", path, st.Version)
	}
	if st.Tensors == "" || strings.ContainsAny(st.Tensors, `/\`) {
		return nil, fmt.Errorf("%s: damaged checkpoint state", path)
	}
	return &st, nil
}

// LoadCheckpoint restores the checkpoint st of the workspace dir into t,
// which must have been made with the checkpoint's configuration.
func LoadCheckpoint(dir string, st *State, t *hyperat.Trainer) error {
	path := filepath.Join(dir, st.Tensors)
	ts, _, err := safetensors.ReadFile(path)
	if err != nil {
		return err
	}
	s := hyperat.Snapshot{Iteration: st.Iteration, AdamStep: st.AdamStep, Config: st.Config, Tensors: ts}
	if err := t.Restore(s); err != nil {
		return errors.New(path + ": " + err.Error())
	}
	return nil
}

// Run is a tuning run's files in a workspace, the hyperat.Store of
// hyperat-tune: it appends records to metrics.jsonl and saves checkpoints.
type Run struct {
	dir, modelSHA string
	path          string // metrics.jsonl
	f             *os.File
	enc           *json.Encoder
}

// OpenRun opens the run in the workspace dir, of the model modelSHA, to
// continue it from iteration it: the records of that iteration's steps and
// later ones (left by an interrupted process) and a torn last line are
// dropped from metrics.jsonl first.
func OpenRun(dir, modelSHA string, it int) (*Run, error) {
	path := filepath.Join(dir, MetricsFile)
	if err := truncateMetrics(path, it); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &Run{dir: dir, modelSHA: modelSHA, path: path, f: f, enc: json.NewEncoder(f)}, nil
}

// Append adds a record as a line of metrics.jsonl.
func (r *Run) Append(rec hyperat.Record) error {
	if err := r.enc.Encode(rec); err != nil {
		return fmt.Errorf("%s: %v", r.path, err)
	}
	return nil
}

// Checkpoint saves a snapshot of the trainer (SaveCheckpoint).
func (r *Run) Checkpoint(s hyperat.Snapshot) error { return SaveCheckpoint(r.dir, r.modelSHA, s) }

// Close closes metrics.jsonl.
func (r *Run) Close() error { return r.f.Close() }

// ReadMetrics reads the records of the workspace dir's metrics.jsonl; a line
// that does not parse (the torn last line of a killed process) is skipped.
// A missing file gives an error that matches os.ErrNotExist.
func ReadMetrics(dir string) ([]hyperat.Record, error) {
	recs, _, err := readMetrics(filepath.Join(dir, MetricsFile))
	return recs, err
}

// readMetrics reads the records of a metrics file, each with its line.
func readMetrics(path string) ([]hyperat.Record, [][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var recs []hyperat.Record
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r hyperat.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			recs = append(recs, r)
			lines = append(lines, append([]byte{}, sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	return recs, lines, nil
}

// truncateMetrics keeps the records of iterations before it: the steps
// before it and the validations up to it.
func truncateMetrics(path string, it int) error {
	recs, lines, err := readMetrics(path)
	var pe *fs.PathError
	switch {
	case os.IsNotExist(err):
		return nil
	case errors.As(err, &pe): // the os error names the file after its operation
		return fmt.Errorf("%s: %v", path, err)
	case err != nil:
		return err
	}
	var out []byte
	for i, r := range recs {
		if (r.Kind == "step" && r.It < it) || (r.Kind == "val" && r.It <= it) {
			out = append(append(out, lines[i]...), '\n')
		}
	}
	return fsx.WriteFile(path, out)
}

// ClearRun removes a previous run's files from the workspace dir: the
// checkpoint, the metrics and their plots, and the tuning result.
func ClearRun(dir string) {
	for _, pat := range []string{StateFile, checkpoints, MetricsFile, LossPlotFile, AccuracyPlotFile} {
		files, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, f := range files {
			os.Remove(f)
		}
	}
	os.RemoveAll(TunedDir(dir))
}
