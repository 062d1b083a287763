package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/safetensors"
)

// PEFT's file names, and the prefix of its state-dict keys for a model
// wrapped by get_peft_model (the adapter's name is not part of saved keys).
const (
	AdapterWeightsFile = "adapter_model.safetensors"
	AdapterConfigFile  = "adapter_config.json"
	peftPrefix         = "base_model.model."
)

// Adapter is one LoRA in PEFT's layout, for PyTorch users: PEFT's
// PeftModel.from_pretrained loads it on a model whose module names match
// the layer names.
type Adapter struct {
	// BaseModel is the model the adapter was tuned on (its file name).
	BaseModel string
	Rank      int
	Alpha     float64 // the scale is Alpha / Rank
	// Layers are the adapted layers with their factors, A [r, in] and
	// B [out, r], under their module names ("blocks.0.attn.qkv").
	Layers []lora.Layer
}

// AdapterConfig is adapter_config.json: the fields of PEFT's LoraConfig this
// export sets.
type AdapterConfig struct {
	PeftType          string   `json:"peft_type"`
	TaskType          *string  `json:"task_type"`
	BaseModel         string   `json:"base_model_name_or_path"`
	R                 int      `json:"r"`
	LoraAlpha         float64  `json:"lora_alpha"`
	LoraDropout       float64  `json:"lora_dropout"`
	TargetModules     []string `json:"target_modules"`
	Bias              string   `json:"bias"`
	FanInFanOut       bool     `json:"fan_in_fan_out"`
	InferenceMode     bool     `json:"inference_mode"`
	ModulesToSave     []string `json:"modules_to_save"`
	InitLoraWeights   bool     `json:"init_lora_weights"`
	LayersToTransform []int    `json:"layers_to_transform"`
	LayersPattern     *string  `json:"layers_pattern"`
	Revision          *string  `json:"revision"`
}

// Config is the adapter's adapter_config.json. target_modules holds the last
// component of each layer name (PEFT matches a module whose name ends with
// one of them).
func (a Adapter) Config() AdapterConfig {
	var targets []string
	seen := map[string]bool{}
	for _, l := range a.Layers {
		last := l.Name[strings.LastIndex(l.Name, ".")+1:]
		if !seen[last] {
			seen[last] = true
			targets = append(targets, last)
		}
	}
	return AdapterConfig{PeftType: "LORA", BaseModel: a.BaseModel, R: a.Rank, LoraAlpha: a.Alpha,
		TargetModules: targets, Bias: "none", InferenceMode: true, InitLoraWeights: true}
}

// Tensors are the adapter's weights under PEFT's keys:
// base_model.model.<layer>.lora_A.weight and .lora_B.weight.
func (a Adapter) Tensors() (map[string]*graph.Tensor, error) {
	out := map[string]*graph.Tensor{}
	for _, l := range a.Layers {
		if l.A == nil || l.B == nil || len(l.A.Shape) != 2 || len(l.B.Shape) != 2 ||
			l.A.Shape[0] != a.Rank || l.B.Shape[1] != a.Rank {
			return nil, fmt.Errorf("the LoRA of %s is not A [%d,in], B [out,%d]", l.Name, a.Rank, a.Rank)
		}
		if l.Name == "" {
			return nil, fmt.Errorf("a LoRA layer has no name")
		}
		ka, kb := l.FactorNames(peftPrefix)
		if _, dup := out[ka]; dup {
			return nil, fmt.Errorf("two LoRAs for layer %s", l.Name)
		}
		out[ka], out[kb] = l.A, l.B
	}
	return out, nil
}

// WriteAdapter writes the adapter into dir (made if missing):
// adapter_model.safetensors, then adapter_config.json, each atomically. It
// returns the paths written.
func WriteAdapter(dir string, a Adapter) ([]string, error) {
	ts, err := a.Tensors()
	if err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(a.Config(), "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("adapter folder %s: %v", dir, fsx.Bare(err))
	}
	wp, cp := filepath.Join(dir, AdapterWeightsFile), filepath.Join(dir, AdapterConfigFile)
	if err := safetensors.WriteFile(wp, ts, map[string]string{"format": "pt"}); err != nil {
		return nil, err
	}
	if err := fsx.WriteFile(cp, append(js, '\n')); err != nil {
		return nil, err
	}
	return []string{wp, cp}, nil
}
