package export

import (
	"fmt"
	"slices"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/onnx"
)

// Unmerged writes src to out like Merged (weights replaced, the rest as it
// was) and adds the LoRAs as nodes. Each LoRA (a lora.Layer carrying its
// factors and scale) is added after every MatMul or Gemm that reads its
// weight, or, for a key that names a reader, after the product of that
// reader alone: Transpose, MatMul, Mul and Add nodes computing
// y = x·W + Scale·(x·Aᵀ)·Bᵀ. The MatMul or Gemm's output is renamed and the
// Add takes its name, so no other node changes; the new nodes follow it,
// which keeps the order topological. LoRAs on one weight key (one
// initializer shared by several layers, or several LoRAs on one layer) are
// concatenated into one factor pair. A LoRA's weight may not be in weights
// too. The check's default reference is the source with the LoRAs merged
// into their weights.
func Unmerged(src *onnx.ModelProto, srcDir string, weights map[layers.WeightKey]*graph.Tensor, branches []lora.Layer, out string, o Options) (*Report, error) {
	m := o.Imported
	if m == nil {
		var err error
		if m, err = onnximport.Import(src, srcDir); err != nil {
			return nil, fmt.Errorf("the source model: %v", err)
		}
	}
	for _, br := range branches {
		for k := range weights {
			if k.Init == br.Key.Init && (k.Reader == "" || br.Key.Reader == "" || k.Reader == br.Key.Reader) {
				return nil, fmt.Errorf("initializer %q has both a LoRA branch and a new value", br.Key.Init)
			}
		}
	}
	groups, err := groupBranches(branches)
	if err != nil {
		return nil, err
	}
	b, err := newBuild(src, srcDir, out, weights)
	if err != nil {
		return nil, err
	}
	if err := b.addBranches(groups, m.Graph); err != nil {
		return nil, err
	}
	ref := o.Reference
	if ref == nil {
		w, err := MergeBranches(m.Graph, weights, branches)
		if err != nil {
			return nil, err
		}
		if ref, err = hyperat.WithWeights(m, m.Graph, w); err != nil {
			return nil, fmt.Errorf("the source model with the branches merged: %v", err)
		}
	}
	return b.write(ref, o)
}

// MergeBranches returns weights with, added for each LoRA, its weight from g
// (an imported source graph) plus Scale·B·A in the weight's layout (see
// lora.Merge), under the LoRA's key; LoRAs on one key add up.
func MergeBranches(g *graph.Graph, weights map[layers.WeightKey]*graph.Tensor, branches []lora.Layer) (map[layers.WeightKey]*graph.Tensor, error) {
	groups, err := groupBranches(branches)
	if err != nil {
		return nil, err
	}
	w := map[layers.WeightKey]*graph.Tensor{}
	for k, v := range weights {
		w[k] = v
	}
	for _, gr := range groups {
		p := g.ParamByName(gr.Key.Init)
		if p == nil || p.Const == nil {
			return nil, fmt.Errorf("initializer %q of layer %s is not in the model", gr.Key.Init, gr.Name)
		}
		if !slices.Equal(p.Const.Shape, gr.WeightShape()) {
			return nil, fmt.Errorf("initializer %q is %v; the LoRA of %s needs %s", gr.Key.Init, p.Const.Shape, gr.Name, wantShape(gr))
		}
		t := p.Const.Clone()
		lora.Merge(t, gr.Transposed, gr.A, gr.B, gr.Scale)
		w[gr.Key] = t
	}
	return w, nil
}

// wantShape describes the weight a LoRA fits: "[6,8] ([out,in])".
func wantShape(l lora.Layer) string {
	s := l.WeightShape()
	return fmt.Sprintf("[%d,%d] (%s)", s[0], s[1], l.Layout())
}

// groupBranches checks the LoRAs and concatenates those on one weight key
// into one: A [R, in] stacks the As, B [out, R] puts the Bs side by side.
// Each group is named after its first LoRA's layer.
func groupBranches(branches []lora.Layer) ([]lora.Layer, error) {
	var keys []layers.WeightKey
	byKey := map[layers.WeightKey][]lora.Layer{}
	for _, br := range branches {
		if err := br.Check(); err != nil {
			return nil, err
		}
		if _, ok := byKey[br.Key]; !ok {
			keys = append(keys, br.Key)
		}
		byKey[br.Key] = append(byKey[br.Key], br)
	}
	groups := make([]lora.Layer, len(keys))
	for i, k := range keys {
		g, err := concat(byKey[k])
		if err != nil {
			return nil, err
		}
		groups[i] = g
	}
	return groups, nil
}

// concat is one LoRA equal to the sum of brs (checked, on one weight): the
// factors concatenated along the rank, and each LoRA's scale folded into
// its part of B when the scales differ.
func concat(brs []lora.Layer) (lora.Layer, error) {
	g := brs[0]
	rank := 0
	fold := false
	for _, br := range brs {
		if br.Transposed != g.Transposed || br.In != g.In || br.Out != g.Out {
			return g, fmt.Errorf("the LoRAs of %s and %s share initializer %q but not its shape or layout", g.Name, br.Name, g.Key.Init)
		}
		fold = fold || br.Scale != g.Scale
		rank += br.A.Shape[0]
	}
	if len(brs) == 1 {
		return g, nil
	}
	if fold {
		g.Scale = 1 // each branch's scale goes into its B
	}
	g.A = graph.NewTensor(graph.Float32, []int{rank, g.In})
	g.B = graph.NewTensor(graph.Float32, []int{g.Out, rank})
	k0 := 0
	for _, br := range brs {
		r := br.A.Shape[0]
		copy(g.A.F[k0*g.In:], br.A.F)
		for o := 0; o < g.Out; o++ {
			for k := 0; k < r; k++ {
				v := br.B.F[o*r+k]
				if fold {
					v *= br.Scale
				}
				g.B.F[o*rank+k0+k] = v
			}
		}
		k0 += r
	}
	return g, nil
}
