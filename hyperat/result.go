package hyperat

import (
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
)

// Result describes a finished tuning.
type Result struct {
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

// Tuned is a finished tuning with the tensors it leaves: what hyperat-tune
// keeps (package workspace writes it) and hyperat-export reads.
type Tuned struct {
	// Result describes the tuning; its adapted layers carry no factors.
	Result Result
	// Weights are the model's new weights in the initializer's own layout
	// (merged LoRA deltas and trained weights) by layers.WeightKey: the
	// initializer, or the initializer as one node reads it when it is
	// shared by several nodes and only that one gets the new tensor. Every
	// other initializer is unchanged.
	Weights map[layers.WeightKey]*graph.Tensor
	// Adapters are each defense's LoRA factors, named by
	// lora.Layer.FactorNames("<defense>/"): "<defense>/<layer>.lora_A.weight"
	// [r, in] and "<defense>/<layer>.lora_B.weight" [out, r]. Empty when
	// the method trains no LoRA.
	Adapters map[string]*graph.Tensor
}

// Tuned completes r (the ModelSHA256, Lambda, Table and Collapsed the caller
// decided) with the run's configuration, scale and adapted layers, and
// returns it with the weights merged by r.Lambda and every defense's LoRA.
func (t *Trainer) Tuned(r Result) (*Tuned, error) {
	w, err := t.MergedWeights(r.Lambda)
	if err != nil {
		return nil, err
	}
	ad := map[string]*graph.Tensor{}
	if len(t.Net.Targets) > 0 {
		for m, d := range t.defs {
			ps, err := t.LoRAFor(m)
			if err != nil {
				return nil, err
			}
			for i, tg := range t.Net.Targets {
				ka, kb := tg.FactorNames(d.Name() + "/")
				ad[ka], ad[kb] = ps.A[i].Clone(), ps.B[i].Clone()
			}
		}
	}
	r.Config, r.Scale, r.Targets = t.Cfg, float64(t.Net.Scale), t.Net.Targets
	return &Tuned{Result: r, Weights: w, Adapters: ad}, nil
}
