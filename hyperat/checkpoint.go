package hyperat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/safetensors"
)

// State is the JSON half of a checkpoint: where the run is, with what
// configuration, and which tensor file (by name and checksum) goes with it.
type State struct {
	Version     int    `json:"version"`
	Iteration   int    `json:"iteration"`
	AdamStep    int    `json:"adam_step"`
	Config      Config `json:"config"`
	ModelSHA256 string `json:"model_sha256"`
	Tensors     string `json:"tensors"`
}

const (
	stateFile    = "state.json"
	stateVersion = 1
)

// SaveCheckpoint writes the tensors (a new file per iteration), then the
// state that names them, both atomically, then removes older tensor files.
// A crash at any point leaves the previous checkpoint or the new one whole.
func (t *Trainer) SaveCheckpoint(dir, modelSHA string) error {
	ts := map[string]*graph.Tensor{}
	for i, n := range t.Names {
		ts["param/"+n] = t.Params[i]
		ts["adam_m/"+n] = t.Opt.M[i]
		ts["adam_v/"+n] = t.Opt.V[i]
	}
	name := fmt.Sprintf("checkpoint-%06d.safetensors", t.It)
	if err := safetensors.WriteFile(filepath.Join(dir, name), ts, map[string]string{"iteration": fmt.Sprint(t.It)}); err != nil {
		return err
	}
	st := State{Version: stateVersion, Iteration: t.It, AdamStep: t.Opt.Step, Config: t.Cfg, ModelSHA256: modelSHA, Tensors: name}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := fsx.WriteFile(filepath.Join(dir, stateFile), append(b, '\n')); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*.safetensors"))
	for _, f := range old {
		if filepath.Base(f) != name {
			os.Remove(f)
		}
	}
	return nil
}

// ReadState reads a workspace's checkpoint state, or returns os.ErrNotExist.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: damaged checkpoint state (%v)", filepath.Join(dir, stateFile), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: checkpoint version %d is not supported", filepath.Join(dir, stateFile), st.Version)
	}
	if st.Tensors == "" || strings.ContainsAny(st.Tensors, `/\`) {
		return nil, fmt.Errorf("%s: damaged checkpoint state", filepath.Join(dir, stateFile))
	}
	return &st, nil
}

// LoadCheckpoint restores parameters, optimizer and iteration from dir. The
// trainer must have been made with the checkpoint's configuration.
func (t *Trainer) LoadCheckpoint(dir string, st *State) error {
	ts, _, err := safetensors.ReadFile(filepath.Join(dir, st.Tensors))
	if err != nil {
		return err
	}
	get := func(key string, dst *graph.Tensor) error {
		src, ok := ts[key]
		if !ok {
			return fmt.Errorf("checkpoint lacks %s", key)
		}
		if len(src.F) != len(dst.F) {
			return fmt.Errorf("checkpoint tensor %s has %d values, want %d", key, len(src.F), len(dst.F))
		}
		copy(dst.F, src.F)
		return nil
	}
	for i, n := range t.Names {
		for _, e := range []error{get("param/"+n, t.Params[i]), get("adam_m/"+n, t.Opt.M[i]), get("adam_v/"+n, t.Opt.V[i])} {
			if e != nil {
				return errors.New(filepath.Join(dir, st.Tensors) + ": " + e.Error())
			}
		}
	}
	t.It, t.Opt.Step = st.Iteration, st.AdamStep
	return nil
}
