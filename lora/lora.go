// Package lora is the low-rank adapter of a linear layer, y = x W0 + scale
// (x A^T) B^T with A [r, in] and B [out, r] (PEFT's layout), shared by tuning
// and export: the description of an adapted layer (Layer), the branch in a
// graph (Insert) and its merge into the weight, W0 + scale B A in the
// weight's own layout (Merge).
//
// An adapted layer has two types. layers.Linear is bound to one graph: its
// nodes and values, which the graph IR changes (a branch inserted, weights
// made inputs). Layer is what outlives that graph: names, sizes, the weight's
// key and layout, and the factors; a tuning result stores it (result.json,
// adapters.safetensors) and export reads it back.
package lora

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/layers"
)

// Layer describes one adapted linear layer and, when it carries them, its
// LoRA factors.
type Layer struct {
	// Name is the layer's module name ("blocks.0.attn.qkv"): PEFT's key.
	Name  string
	Kind  string
	Block int // the transformer block, -1 outside blocks
	In    int
	Out   int
	// Key is the weight the LoRA merges into: the initializer, or one
	// reader's copy of a shared one.
	Key layers.WeightKey
	// Transposed: the weight is stored [out, in] (Gemm transB=1, or a
	// MatMul reading it through a Transpose), else [in, out].
	Transposed bool
	// A [r, in] and B [out, r] are the factors and Scale multiplies their
	// product. A result's list of layers (result.json) leaves them out: the
	// factors are in adapters.safetensors, the scale is the result's.
	A, B  *graph.Tensor
	Scale float32
}

// Describe is the description of a recognized layer.
func Describe(l *layers.Linear) Layer {
	return Layer{Name: l.Name, Kind: l.Kind, Block: l.Block, In: l.In, Out: l.Out, Key: l.Key, Transposed: l.Transposed}
}

// With returns l carrying factors a, b and scale.
func (l Layer) With(a, b *graph.Tensor, scale float32) Layer {
	l.A, l.B, l.Scale = a, b, scale
	return l
}

// FactorNames are the names of l's factors under a prefix: prefix + Name +
// ".lora_A.weight" and ".lora_B.weight", PEFT's names (the prefix is
// "base_model.model." in a PEFT adapter, "<defense>/" in a tuning result's
// adapters.safetensors, empty for the initializers of an unmerged export).
func (l Layer) FactorNames(prefix string) (a, b string) {
	return prefix + l.Name + ".lora_A.weight", prefix + l.Name + ".lora_B.weight"
}

// WeightShape is the shape of the weight in its layout.
func (l Layer) WeightShape() []int {
	if l.Transposed {
		return []int{l.Out, l.In}
	}
	return []int{l.In, l.Out}
}

// Layout names the weight's layout: "[out,in]" or "[in,out]".
func (l Layer) Layout() string {
	if l.Transposed {
		return "[out,in]"
	}
	return "[in,out]"
}

// Check reports factors that are not float32 A [r, in] and B [out, r] of
// finite values with a finite scale; In and Out are taken from them when
// unset.
func (l *Layer) Check() error {
	a, b := l.A, l.B
	switch {
	case l.Name == "" || l.Key.Init == "":
		return fmt.Errorf("a LoRA needs a layer name and a weight")
	case a == nil || b == nil || a.DType != graph.Float32 || b.DType != graph.Float32 || len(a.Shape) != 2 || len(b.Shape) != 2:
		return fmt.Errorf("the LoRA of %s needs float32 matrices A and B", l.Name)
	case a.Shape[0] < 1 || a.Shape[0] != b.Shape[1] || a.Shape[1] < 1 || b.Shape[0] < 1 ||
		l.In != 0 && l.In != a.Shape[1] || l.Out != 0 && l.Out != b.Shape[0]:
		return fmt.Errorf("the LoRA of %s has A %v and B %v; want A [r,in] and B [out,r]", l.Name, a.Shape, b.Shape)
	case !Finite(a.F) || !Finite(b.F) || !Finite([]float32{l.Scale}):
		return fmt.Errorf("the LoRA of %s holds NaN or infinite values", l.Name)
	}
	l.In, l.Out = a.Shape[1], b.Shape[0]
	return nil
}

// Finite reports whether every value is finite.
func Finite(x []float32) bool {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

// jsonLayer is a Layer in result.json. Weight repeats Key's initializer:
// results written before per-reader keys have it alone.
type jsonLayer struct {
	Name       string
	Kind       string
	Block      int
	In, Out    int
	Weight     string
	Transposed bool
	Key        layers.WeightKey
}

// MarshalJSON writes the description (the factors stay out).
func (l Layer) MarshalJSON() ([]byte, error) {
	return json.Marshal(jsonLayer{l.Name, l.Kind, l.Block, l.In, l.Out, l.Key.Init, l.Transposed, l.Key})
}

// UnmarshalJSON reads what MarshalJSON writes, and results that name the
// weight by its initializer alone.
func (l *Layer) UnmarshalJSON(b []byte) error {
	var j jsonLayer
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = Layer{Name: j.Name, Kind: j.Kind, Block: j.Block, In: j.In, Out: j.Out, Key: j.Key, Transposed: j.Transposed}
	if l.Key.Init == "" {
		l.Key = layers.WeightKey{Init: j.Weight}
	}
	return nil
}
