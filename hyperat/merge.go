package hyperat

import (
	"fmt"
	"strings"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/model"
)

// MergedWeights returns the model's new weights keyed as Target.Key and
// Net.TrainKeys say (an initializer's name, or "initializer@output" for one
// node's copy of a shared initializer), each in the initializer's own
// layout: W0 + delta^T for MatMul weights [in, out], W0 + delta for
// [out, in] ones, and the trained weights as they are. lambda weighs the
// defenses (ignored for full fine-tuning).
func (t *Trainer) MergedWeights(lambda []float64) (map[string]*graph.Tensor, error) {
	out := map[string]*graph.Tensor{}
	if len(t.Net.Targets) > 0 {
		deltas, err := t.Merged(lambda)
		if err != nil {
			return nil, err
		}
		for i, tg := range t.Net.Targets {
			w0 := t.orig.ParamByName(tg.Weight)
			if w0 == nil {
				return nil, fmt.Errorf("initializer %s of %s not found", tg.Weight, tg.Name)
			}
			if _, dup := out[tg.Key]; dup {
				return nil, fmt.Errorf("two adapted layers write weight %s", tg.Key)
			}
			w := w0.Const.Clone()
			d := deltas[i]
			for o := 0; o < tg.Out; o++ {
				for j := 0; j < tg.In; j++ {
					if tg.Transposed {
						w.F[o*tg.In+j] += d.F[o*tg.In+j]
					} else {
						w.F[j*tg.Out+o] += d.F[o*tg.In+j]
					}
				}
			}
			out[tg.Key] = w
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
// weights keyed as MergedWeights keys them: a whole initializer replaced,
// or one node's copy of a shared initializer.
func WithWeights(m *onnximport.Model, g *graph.Graph, w map[string]*graph.Tensor) (*model.Classifier, error) {
	c, err := ApplyWeights(g, w)
	if err != nil {
		return nil, err
	}
	cp := *m
	cp.Graph = c
	return model.New(&cp)
}

// ApplyWeights returns a copy of g with the weights applied.
func ApplyWeights(g *graph.Graph, w map[string]*graph.Tensor) (*graph.Graph, error) {
	c := g.Clone()
	for key, t := range w {
		init, out, split := strings.Cut(key, "@")
		p := c.ParamByName(init)
		if p == nil {
			return nil, fmt.Errorf("the model has no initializer %s", init)
		}
		if !split {
			p.Const = t
			continue
		}
		found := false
		for _, n := range c.Nodes {
			if len(n.Outputs) == 0 || n.Outputs[0].Name != out {
				continue
			}
			cp := c.AddParam(init+"@"+out, t)
			for i, in := range n.Inputs {
				if in == p {
					n.Inputs[i], found = cp, true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("no node producing %s reads %s", out, init)
		}
	}
	return c, nil
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
