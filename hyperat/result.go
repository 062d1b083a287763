package hyperat

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/safetensors"
)

// The result of a tuning, in the workspace's "tuned" folder, is what
// hyperat-export reads:
//
//	weights.safetensors   the model's new weights, in the initializer's own
//	                      layout (merged LoRA deltas and trained weights),
//	                      keyed by layers.WeightKey's text form: the
//	                      initializer's name, or "initializer@output" when
//	                      the initializer is shared by several nodes and
//	                      only the node whose first output is "output" gets
//	                      the new tensor (export gives that node its own
//	                      initializer); every other initializer is unchanged
//	adapters.safetensors  each defense's LoRA factors in PEFT's layout,
//	                      named by lora.Layer.FactorNames("<defense>/"):
//	                      "<defense>/<layer>.lora_A.weight" [r, in] and
//	                      "<defense>/<layer>.lora_B.weight" [out, r]
//	result.json           Result (the adapted layers without their factors)
const (
	ResultDir     = "tuned"
	WeightsFile   = "weights.safetensors"
	AdaptersFile  = "adapters.safetensors"
	ResultFile    = "result.json"
	resultVersion = 1
)

// Result describes a finished tuning.
type Result struct {
	Version     int          `json:"version"`
	ModelSHA256 string       `json:"model_sha256"`
	Config      Config       `json:"config"`
	Lambda      []float64    `json:"lambda"` // merge weights per defense
	Scale       float64      `json:"scale"`  // alpha / r
	Targets     []lora.Layer `json:"targets"`
	Table       []ResultRow  `json:"table"` // validation accuracies
	Collapsed   bool         `json:"collapsed"`
}

// ResultRow is one line of the final table.
type ResultRow struct {
	Name   string  `json:"name"`
	Clean  float64 `json:"clean"`
	Robust float64 `json:"robust"`
}

// WriteResult writes the tuned folder atomically, result.json last.
func (t *Trainer) WriteResult(wsDir string, r Result) error {
	dir := filepath.Join(wsDir, ResultDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	w, err := t.MergedWeights(r.Lambda)
	if err != nil {
		return err
	}
	named := map[string]*graph.Tensor{}
	for k, v := range w {
		named[k.String()] = v
	}
	if err := safetensors.WriteFile(filepath.Join(dir, WeightsFile), named, map[string]string{"format": "onnx-initializers"}); err != nil {
		return err
	}
	ad := map[string]*graph.Tensor{}
	if len(t.Net.Targets) > 0 {
		for m, d := range t.defs {
			ps, err := t.LoRAFor(m)
			if err != nil {
				return err
			}
			for i, tg := range t.Net.Targets {
				ka, kb := tg.FactorNames(d.Name() + "/")
				ad[ka], ad[kb] = ps.A[i].Clone(), ps.B[i].Clone()
			}
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, AdaptersFile), ad, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	r.Version, r.Config, r.Scale, r.Targets = resultVersion, t.Cfg, float64(t.Net.Scale), t.Net.Targets
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFile(filepath.Join(dir, ResultFile), append(b, '\n'))
}

// ReadResult reads a workspace's tuning result and its merged weights.
func ReadResult(wsDir string) (*Result, map[layers.WeightKey]*graph.Tensor, error) {
	dir := filepath.Join(wsDir, ResultDir)
	b, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("%s has no tuning result; run hyperat-tune first", wsDir)
		}
		return nil, nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil || r.Version != resultVersion {
		return nil, nil, fmt.Errorf("%s: damaged or unknown tuning result", filepath.Join(dir, ResultFile))
	}
	named, _, err := safetensors.ReadFile(filepath.Join(dir, WeightsFile))
	if err != nil {
		return nil, nil, err
	}
	w := map[layers.WeightKey]*graph.Tensor{}
	for k, v := range named {
		w[layers.ParseWeightKey(k)] = v
	}
	return &r, w, nil
}
