package hyperat

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/lora"
)

// Hypernet generates the LoRA factors of every target for one defense:
//
//	x_i = [e_m; l_block(i); t_kind(i)]           (embeddings, EmbedDim each)
//	z_i = relu(W2 relu(W1 x_i + b1) + b2)         (width Hidden)
//	A_i = reshape(HA_kind z_i + ha_kind, r x in)  B_i = reshape(HB_kind z_i + hb_kind, out x r)
//
// All layers are generated in one program whose single output is the
// concatenation of every A_i then B_i, flattened; its gradient program takes
// the matching cotangent. HB and hb start at zero, so B = 0 and the tuned
// model starts exactly as the pretrained one.
type Hypernet struct {
	Defenses int
	Kinds    []string // layer kinds, sorted
	Names    []string // parameter names, in Params order
	g        *graph.Graph
	method   *graph.Value   // one-hot [1, Defenses]
	params   []*graph.Value // graph inputs, in Names order
	out      *graph.Value
	seed     *graph.Value
	prog     *compile.Program
	offA     []int // where A_i starts in the output
	offB     []int
	total    int
}

// HyperOptions are the hypernetwork's sizes.
type HyperOptions struct {
	EmbedDim, Hidden int
}

// NewHypernet builds the generator for the given targets and returns it with
// freshly initialized parameters (PyTorch's default Linear init, embeddings
// from N(0, 1)).
func NewHypernet(targets []lora.Layer, rank, defenses int, o HyperOptions, rng *rand.Rand) (*Hypernet, []*graph.Tensor, error) {
	h := &Hypernet{Defenses: defenses, g: graph.New()}
	b := &hyperBuilder{h: h, rng: rng}
	z := b.trunk(targets, o)
	groups := b.heads(targets, z, rank, o.Hidden)
	h.offsets(targets, groups, rank)
	h.seed = h.g.AddInput("cotangent", graph.Float32, graph.StaticShape(h.total))
	p, err := compile.Compile(h.g, compile.Options{Grad: &compile.GradSpec{Loss: h.out, Seed: h.seed, Wrt: h.params}})
	if err != nil {
		return nil, nil, err
	}
	h.prog = p
	return h, b.init, nil
}

// hyperBuilder adds the hypernetwork's parameters to its graph as inputs and
// draws their initial values, in a fixed order.
type hyperBuilder struct {
	h    *Hypernet
	rng  *rand.Rand
	init []*graph.Tensor
}

func (b *hyperBuilder) param(name string, t *graph.Tensor) *graph.Value {
	v := b.h.g.AddInput(name, graph.Float32, graph.StaticShape(t.Shape...))
	b.h.params = append(b.h.params, v)
	b.h.Names = append(b.h.Names, name)
	b.init = append(b.init, t)
	return v
}

func (b *hyperBuilder) normal(shape ...int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = float32(b.rng.NormFloat64())
	}
	return t
}

func (b *hyperBuilder) uniform(bound float64, shape ...int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = float32((2*b.rng.Float64() - 1) * bound)
	}
	return t
}

// trunk is z, one row per target: the embeddings of the defense, the
// target's block and its kind, concatenated, through the two-layer MLP.
func (b *hyperBuilder) trunk(targets []lora.Layer, o HyperOptions) *graph.Value {
	h, g := b.h, b.h.g
	kindIdx := map[string]int{}
	blocks := 0
	for _, t := range targets {
		if _, ok := kindIdx[t.Kind]; !ok {
			kindIdx[t.Kind] = 0
			h.Kinds = append(h.Kinds, t.Kind)
		}
		blocks = max(blocks, t.Block+1)
	}
	sort.Strings(h.Kinds)
	for i, k := range h.Kinds {
		kindIdx[k] = i
	}
	ed, hid := o.EmbedDim, o.Hidden
	h.method = g.AddInput("method", graph.Float32, graph.StaticShape(1, h.Defenses))
	E := b.param("embed.method", b.normal(h.Defenses, ed))
	L := b.param("embed.block", b.normal(blocks, ed))
	T := b.param("embed.kind", b.normal(len(h.Kinds), ed))
	b1 := 1 / math.Sqrt(float64(3*ed))
	W1 := b.param("mlp.0.weight", b.uniform(b1, 3*ed, hid))
	B1 := b.param("mlp.0.bias", b.uniform(b1, hid))
	b2 := 1 / math.Sqrt(float64(hid))
	W2 := b.param("mlp.2.weight", b.uniform(b2, hid, hid))
	B2 := b.param("mlp.2.bias", b.uniform(b2, hid))

	n := len(targets)
	// selection matrices: row i picks target i's block and kind embedding
	lsel := graph.NewTensor(graph.Float32, []int{n, blocks})
	tsel := graph.NewTensor(graph.Float32, []int{n, len(h.Kinds)})
	for i, t := range targets {
		lsel.F[i*blocks+t.Block] = 1
		tsel.F[i*len(h.Kinds)+kindIdx[t.Kind]] = 1
	}
	e := g.Op("MatMul", nil, h.method, E)
	e = g.Op("Expand", nil, e, g.Const("shape", graph.I64([]int{2}, []int64{int64(n), int64(ed)})))
	l := g.Op("MatMul", nil, g.Const("block_select", lsel), L)
	k := g.Op("MatMul", nil, g.Const("kind_select", tsel), T)
	x := g.Op("Concat", graph.Attrs{"axis": int64(1)}, e, l, k)
	z := g.Op("Relu", nil, g.Op("Add", nil, g.Op("MatMul", nil, x, W1), B1))
	return g.Op("Relu", nil, g.Op("Add", nil, g.Op("MatMul", nil, z, W2), B2))
}

// headGroup is the targets one pair of heads serves: one kind at one shape
// (a hierarchical model, Swin or MaxViT, has a kind at several widths).
type headGroup struct {
	kind, suffix string // suffix names the heads of a kind's second and later shapes
	in, out      int
	members      []int // target indices, in the targets' order
}

// headGroups groups the targets by kind (sorted) and, within a kind, by
// shape in order of first appearance. A kind's first shape keeps the plain
// parameter names (head_A.<kind>), so a model with one shape per kind has
// the names it always had.
func (h *Hypernet) headGroups(targets []lora.Layer) []*headGroup {
	var out []*headGroup
	for _, kind := range h.Kinds {
		var mine []*headGroup
		for i, t := range targets {
			if t.Kind != kind {
				continue
			}
			var g *headGroup
			for _, c := range mine {
				if c.in == t.In && c.out == t.Out {
					g = c
				}
			}
			if g == nil {
				g = &headGroup{kind: kind, in: t.In, out: t.Out}
				if len(mine) > 0 {
					g.suffix = fmt.Sprintf("@%dx%d", t.In, t.Out)
				}
				mine = append(mine, g)
			}
			g.members = append(g.members, i)
		}
		out = append(out, mine...)
	}
	return out
}

// heads applies one pair of heads per group (kind and shape) to the rows of
// that group at once and makes the output: the groups' A then B rows,
// flattened and concatenated. It returns the groups, in output order.
func (b *hyperBuilder) heads(targets []lora.Layer, z *graph.Value, rank, hid int) []*headGroup {
	h, g := b.h, b.h.g
	b2 := 1 / math.Sqrt(float64(hid))
	var pieces []*graph.Value
	flat := func(v *graph.Value) *graph.Value {
		return g.Op("Reshape", nil, v, g.Const("flat", graph.I64([]int{1}, []int64{-1})))
	}
	groups := h.headGroups(targets)
	for _, grp := range groups {
		idx := make([]int64, len(grp.members))
		for j, i := range grp.members {
			idx[j] = int64(i)
		}
		name := grp.kind + grp.suffix
		zk := g.Op("Gather", graph.Attrs{"axis": int64(0)}, z, g.Const("rows", graph.I64([]int{len(idx)}, idx)))
		HA := b.param("head_A."+name+".weight", b.uniform(b2, hid, rank*grp.in))
		hA := b.param("head_A."+name+".bias", b.uniform(b2, rank*grp.in))
		HB := b.param("head_B."+name+".weight", graph.NewTensor(graph.Float32, []int{hid, grp.out * rank}))
		hB := b.param("head_B."+name+".bias", graph.NewTensor(graph.Float32, []int{grp.out * rank}))
		pieces = append(pieces, flat(g.Op("Add", nil, g.Op("MatMul", nil, zk, HA), hA)),
			flat(g.Op("Add", nil, g.Op("MatMul", nil, zk, HB), hB)))
	}
	h.out = g.Op("Concat", graph.Attrs{"axis": int64(0)}, pieces...)
	g.Outputs = []*graph.Value{h.out}
	return groups
}

// offsets places each target's A and B in the output: group by group, the
// group's As, then its Bs, in the order of the rows.
func (h *Hypernet) offsets(targets []lora.Layer, groups []*headGroup, rank int) {
	h.offA, h.offB = make([]int, len(targets)), make([]int, len(targets))
	off := 0
	for _, grp := range groups {
		for _, i := range grp.members {
			h.offA[i] = off
			off += rank * targets[i].In
		}
		for _, i := range grp.members {
			h.offB[i] = off
			off += targets[i].Out * rank
		}
	}
	h.total = off
}

func (h *Hypernet) inputs(m int, params []*graph.Tensor) []*graph.Tensor {
	oh := graph.NewTensor(graph.Float32, []int{1, h.Defenses})
	oh.F[m] = 1
	return append([]*graph.Tensor{oh}, params...)
}

// Generate writes the factors of defense m into A and B (shapes of the targets).
func (h *Hypernet) Generate(m int, params []*graph.Tensor, A, B []*graph.Tensor) error {
	outs, err := h.prog.Forward(h.inputs(m, params)...)
	if err != nil {
		return err
	}
	v := outs[0].F
	for i := range A {
		copy(A[i].F, v[h.offA[i]:])
		copy(B[i].F, v[h.offB[i]:])
	}
	return nil
}

// Backward takes dL/dA and dL/dB (from the last Generate's defense) and adds
// the gradients of the hypernetwork's parameters into acc.
func (h *Hypernet) Backward(dA, dB []*graph.Tensor, acc []*graph.Tensor) error {
	s := graph.NewTensor(graph.Float32, []int{h.total})
	for i := range dA {
		copy(s.F[h.offA[i]:], dA[i].F)
		copy(s.F[h.offB[i]:], dB[i].F)
	}
	if err := h.prog.Backward(s); err != nil {
		return err
	}
	for i, p := range h.params {
		addTo(acc[i], h.prog.Grad(p))
	}
	return nil
}
