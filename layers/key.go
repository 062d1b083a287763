package layers

import (
	"fmt"
	"strings"

	"github.com/hyperat/hyperat/graph"
)

// WeightKey names one weight of a model in a tuning result: an initializer
// (Reader empty), or one node's copy of an initializer that other nodes read
// too (exporters store identical tensors once): Reader is the first output
// of the node that reads it (unique in ONNX), the only node the new value
// goes to.
type WeightKey struct {
	Init   string
	Reader string
}

// String is the key's form in files (weights.safetensors, result.json):
// "init", or "init@reader".
func (k WeightKey) String() string {
	if k.Reader == "" {
		return k.Init
	}
	return k.Init + "@" + k.Reader
}

// Compare orders keys as their text forms, for a fixed order of a map's keys.
func (k WeightKey) Compare(o WeightKey) int { return strings.Compare(k.String(), o.String()) }

// ParseWeightKey reads the form String writes; the first "@" ends the
// initializer's name.
func ParseWeightKey(s string) WeightKey {
	init, reader, _ := strings.Cut(s, "@")
	return WeightKey{Init: init, Reader: reader}
}

// MarshalText writes String's form, so JSON holds the key as one string.
func (k WeightKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads String's form.
func (k *WeightKey) UnmarshalText(b []byte) error {
	*k = ParseWeightKey(string(b))
	return nil
}

// Redirect makes the node that k names read v in place of k's initializer
// (a per-reader copy); k must name a reader.
func Redirect(g *graph.Graph, k WeightKey, v *graph.Value) error {
	p := g.ParamByName(k.Init)
	if p == nil {
		return fmt.Errorf("the model has no initializer %s", k.Init)
	}
	found := false
	for _, n := range g.Nodes {
		if len(n.Outputs) == 0 || n.Outputs[0].Name != k.Reader {
			continue
		}
		for i, in := range n.Inputs {
			if in == p {
				n.Inputs[i], found = v, true
			}
		}
	}
	if !found {
		return fmt.Errorf("no node producing %s reads %s", k.Reader, k.Init)
	}
	return nil
}

// ApplyWeights returns a copy of g with new weights: a whole initializer
// replaced, or, for a key with a reader, that node given its own initializer
// (named as the key) holding the new value.
func ApplyWeights(g *graph.Graph, w map[WeightKey]*graph.Tensor) (*graph.Graph, error) {
	c := g.Clone()
	for k, t := range w {
		p := c.ParamByName(k.Init)
		if p == nil {
			return nil, fmt.Errorf("the model has no initializer %s", k.Init)
		}
		if k.Reader == "" {
			p.Const = t
			continue
		}
		if err := Redirect(c, k, c.AddParam(k.String(), t)); err != nil {
			return nil, err
		}
	}
	return c, nil
}
