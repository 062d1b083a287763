package workspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/safetensors"
)

// The files of a tuning's result, in the workspace's folder ResultDir.
const (
	ResultDir     = "tuned"
	WeightsFile   = "weights.safetensors"
	AdaptersFile  = "adapters.safetensors"
	ResultFile    = "result.json"
	resultVersion = 1
)

// resultFile is result.json: the result with the version of its format.
type resultFile struct {
	Version int `json:"version"`
	hyperat.Result
}

// TunedDir is the folder of the tuning result in the workspace dir.
func TunedDir(dir string) string { return filepath.Join(dir, ResultDir) }

// WriteResult writes a finished tuning into the workspace dir's tuned
// folder, each file atomically, result.json last.
func WriteResult(dir string, t *hyperat.Tuned) error {
	td := TunedDir(dir)
	if err := os.MkdirAll(td, 0o755); err != nil {
		return err
	}
	named := map[string]*graph.Tensor{}
	for k, v := range t.Weights {
		named[k.String()] = v
	}
	if err := safetensors.WriteFile(filepath.Join(td, WeightsFile), named, map[string]string{"format": "onnx-initializers"}); err != nil {
		return err
	}
	ad := t.Adapters
	if ad == nil {
		ad = map[string]*graph.Tensor{}
	}
	if err := safetensors.WriteFile(filepath.Join(td, AdaptersFile), ad, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	b, err := json.MarshalIndent(resultFile{Version: resultVersion, Result: t.Result}, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFile(filepath.Join(td, ResultFile), append(b, '\n'))
}

// ReadResult reads the workspace dir's tuning result and its merged weights.
func ReadResult(dir string) (*hyperat.Result, map[layers.WeightKey]*graph.Tensor, error) {
	td := TunedDir(dir)
	b, err := os.ReadFile(filepath.Join(td, ResultFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("%s has no tuning result; run hyperat-tune first", dir)
		}
		return nil, nil, err
	}
	var r resultFile
	if err := json.Unmarshal(b, &r); err != nil || r.Version != resultVersion {
		return nil, nil, fmt.Errorf("%s: damaged or unknown tuning result", filepath.Join(td, ResultFile))
	}
	named, _, err := safetensors.ReadFile(filepath.Join(td, WeightsFile))
	if err != nil {
		return nil, nil, err
	}
	w := map[layers.WeightKey]*graph.Tensor{}
	for k, v := range named {
		w[layers.ParseWeightKey(k)] = v
	}
	return &r.Result, w, nil
}

// ReadAdapters reads the tuning result's LoRA factors (hyperat.Tuned's
// Adapters) from the workspace dir.
func ReadAdapters(dir string) (map[string]*graph.Tensor, error) {
	path := filepath.Join(TunedDir(dir), AdaptersFile)
	ts, _, err := safetensors.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %v", path, pe.Err)
		}
		return nil, err
	}
	return ts, nil
}
