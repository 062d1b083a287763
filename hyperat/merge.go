package hyperat

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/model"
)

// MergedWeights returns the model's new weights under the keys of the
// targets and of Net.TrainKeys, each in the initializer's own layout: the pretrained
// weight plus the defenses' deltas lambda_m scale B_m A_m (the products are
// merged, never the factors), and the trained weights as they are. lambda
// weighs the defenses (ignored for full fine-tuning).
func (t *Trainer) MergedWeights(lambda []float64) (map[layers.WeightKey]*graph.Tensor, error) {
	out := map[layers.WeightKey]*graph.Tensor{}
	ws := make([]*graph.Tensor, len(t.Net.Targets))
	for i, tg := range t.Net.Targets {
		w0 := t.orig.ParamByName(tg.Key.Init)
		if w0 == nil {
			return nil, fmt.Errorf("initializer %s of %s not found", tg.Key.Init, tg.Name)
		}
		if _, dup := out[tg.Key]; dup {
			return nil, fmt.Errorf("two adapted layers write weight %s", tg.Key)
		}
		ws[i] = w0.Const.Clone()
		out[tg.Key] = ws[i]
	}
	for m, l := range lambda {
		if len(ws) == 0 || l == 0 {
			continue
		}
		ps, err := t.LoRAFor(m)
		if err != nil {
			return nil, err
		}
		for i, tg := range t.Net.Targets {
			lora.Merge(ws[i], tg.Transposed, ps.A[i], ps.B[i], float32(l)*t.Net.Scale)
		}
	}
	for i, key := range t.Net.TrainKeys {
		if _, ok := out[key]; ok {
			return nil, fmt.Errorf("weight %s is both adapted and trained", key)
		}
		out[key] = t.trainedWeights()[i].Clone()
	}
	return out, nil
}

// MergedModel is the original model with merged weights, as a classifier.
func (t *Trainer) MergedModel(lambda []float64) (*model.Classifier, error) {
	w, err := t.MergedWeights(lambda)
	if err != nil {
		return nil, err
	}
	return WithWeights(t.origModel, t.orig, w)
}

// WithWeights makes a classifier from graph g (of model m) with new
// weights keyed as MergedWeights keys them (see layers.ApplyWeights).
func WithWeights(m *onnximport.Model, g *graph.Graph, w map[layers.WeightKey]*graph.Tensor) (*model.Classifier, error) {
	c, err := layers.ApplyWeights(g, w)
	if err != nil {
		return nil, err
	}
	cp := *m
	cp.Graph = c
	return model.New(&cp)
}

// Uniform is the uniform merge, 1/M each.
func Uniform(m int) []float64 {
	l := make([]float64, m)
	for i := range l {
		l[i] = 1 / float64(m)
	}
	return l
}

// Simplex lists the points of the M-simplex on a grid of step 1/k.
func Simplex(m, k int) [][]float64 {
	var out [][]float64
	var rec func(prefix []int, left int)
	rec = func(prefix []int, left int) {
		if len(prefix) == m-1 {
			p := make([]float64, m)
			for i, v := range prefix {
				p[i] = float64(v) / float64(k)
			}
			p[m-1] = float64(left) / float64(k)
			out = append(out, p)
			return
		}
		for v := 0; v <= left; v++ {
			rec(append(append([]int{}, prefix...), v), left-v)
		}
	}
	rec(nil, k)
	return out
}
