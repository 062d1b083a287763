package hyperat

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/lora"
)

func testTargets() []lora.Layer {
	return []lora.Layer{
		{Name: "blocks.0.attn.qkv", Kind: "qkv", Block: 0, In: 4, Out: 12},
		{Name: "blocks.0.mlp.fc1", Kind: "fc1", Block: 0, In: 4, Out: 8},
		{Name: "blocks.1.attn.qkv", Kind: "qkv", Block: 1, In: 4, Out: 12},
		{Name: "blocks.1.mlp.fc1", Kind: "fc1", Block: 1, In: 4, Out: 8},
	}
}

// hierTargets are a hierarchical model's: the second stage is twice as wide,
// so one kind has layers of two shapes, and a third stage is as wide as the
// first.
func hierTargets() []lora.Layer {
	return []lora.Layer{
		{Name: "stage0.attn.qkv", Kind: "qkv", Block: 0, In: 4, Out: 12},
		{Name: "stage0.mlp.fc1", Kind: "fc1", Block: 0, In: 4, Out: 8},
		{Name: "stage1.attn.qkv", Kind: "qkv", Block: 1, In: 8, Out: 24},
		{Name: "stage1.mlp.fc1", Kind: "fc1", Block: 1, In: 8, Out: 16},
		{Name: "stage2.attn.qkv", Kind: "qkv", Block: 2, In: 4, Out: 12},
		{Name: "head", Kind: "head", Block: 2, In: 8, Out: 3},
	}
}

// targetSets runs fn on the plain and the hierarchical targets.
func targetSets(t *testing.T, fn func(t *testing.T, ts []lora.Layer)) {
	t.Run("plain", func(t *testing.T) { fn(t, testTargets()) })
	t.Run("hierarchical", func(t *testing.T) { fn(t, hierTargets()) })
}

func factors(ts []lora.Layer, rank int) (A, B []*graph.Tensor) {
	for _, t := range ts {
		A = append(A, graph.NewTensor(graph.Float32, []int{rank, t.In}))
		B = append(B, graph.NewTensor(graph.Float32, []int{t.Out, rank}))
	}
	return
}

// B starts at zero for every defense, and A differs between defenses.
func TestHypernetStartsAtZeroDelta(t *testing.T) { targetSets(t, startsAtZeroDelta) }

func startsAtZeroDelta(t *testing.T, ts []lora.Layer) {
	h, params, err := NewHypernet(ts, 2, 3, HyperOptions{EmbedDim: 5, Hidden: 7}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	A0, B0 := factors(ts, 2)
	A1, B1 := factors(ts, 2)
	if err := h.Generate(0, params, A0, B0); err != nil {
		t.Fatal(err)
	}
	if err := h.Generate(1, params, A1, B1); err != nil {
		t.Fatal(err)
	}
	for i := range ts {
		for _, v := range append(B0[i].F, B1[i].F...) {
			if v != 0 {
				t.Fatal("B is not zero at initialization")
			}
		}
		same := true
		for j := range A0[i].F {
			same = same && A0[i].F[j] == A1[i].F[j]
		}
		if same {
			t.Fatalf("target %d: A is the same for two defenses", i)
		}
	}
}

// The hypernetwork's parameter gradients agree with central differences of
// L = sum(A*RA) + sum(B*RB).
func TestHypernetGradient(t *testing.T) { targetSets(t, hypernetGradient) }

func hypernetGradient(t *testing.T, ts []lora.Layer) {
	rng := rand.New(rand.NewPCG(3, 4))
	h, params, err := NewHypernet(ts, 2, 3, HyperOptions{EmbedDim: 5, Hidden: 7}, rng)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range params { // move B's heads away from zero so every path is live
		for i := range p.F {
			if p.F[i] == 0 {
				p.F[i] = float32(0.3 * rng.NormFloat64())
			}
		}
	}
	A, B := factors(ts, 2)
	RA, RB := factors(ts, 2)
	for _, r := range append(RA, RB...) {
		for i := range r.F {
			r.F[i] = float32(rng.NormFloat64())
		}
	}
	loss := func() float64 {
		if err := h.Generate(1, params, A, B); err != nil {
			t.Fatal(err)
		}
		s := 0.0
		for i := range A {
			for j := range A[i].F {
				s += float64(A[i].F[j]) * float64(RA[i].F[j])
			}
			for j := range B[i].F {
				s += float64(B[i].F[j]) * float64(RB[i].F[j])
			}
		}
		return s
	}
	loss()
	acc := make([]*graph.Tensor, len(params))
	for i, p := range params {
		acc[i] = graph.NewTensor(graph.Float32, p.Shape)
	}
	if err := h.Backward(RA, RB, acc); err != nil {
		t.Fatal(err)
	}
	const hstep = 1e-2
	checked := 0
	f0 := loss()
	for pi, p := range params {
		scale := 1e-3
		for _, v := range acc[pi].F {
			scale = max(scale, math.Abs(float64(v)))
		}
		for j := 0; j < len(p.F); j += 1 + len(p.F)/7 {
			o := p.F[j]
			p.F[j] = o + hstep
			fp := loss()
			p.F[j] = o - hstep
			fm := loss()
			p.F[j] = o
			if math.Abs((fp-f0)-(f0-fm))/hstep > 5e-3*scale {
				continue // a ReLU's kink lies within the step: no derivative to compare
			}
			checked++
			fd := (fp - fm) / (2 * hstep)
			if math.Abs(fd-float64(acc[pi].F[j])) > 5e-3*scale {
				t.Fatalf("%s[%d]: gradient %g, central difference %g", h.Names[pi], j, acc[pi].F[j], fd)
			}
		}
	}
	if checked < len(params)*5 {
		t.Fatalf("only %d coordinates away from a kink", checked)
	}
}

// Layers of one kind and shape share a pair of heads; a kind with several
// shapes gets a pair per shape, named by it; each output piece is used once.
func TestHypernetHeadGroups(t *testing.T) {
	ts := hierTargets()
	h, _, err := NewHypernet(ts, 2, 3, HyperOptions{EmbedDim: 5, Hidden: 7}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	heads := map[string]bool{}
	for _, n := range h.Names {
		heads[n] = true
	}
	for _, w := range []string{"head_A.qkv.4x12.weight", "head_B.qkv.8x24.bias", "head_A.fc1.8x16.weight", "head_A.fc1.4x8.weight", "head_B.head.weight"} {
		if !heads[w] {
			t.Errorf("no parameter %s in %v", w, h.Names)
		}
	}
	if heads["head_A.qkv.weight"] {
		t.Errorf("a kind of two shapes has a head of its own: %v", h.Names)
	}
	used := make([]bool, h.total)
	for i, l := range ts {
		for _, r := range [][2]int{{h.offA[i], 2 * l.In}, {h.offB[i], 2 * l.Out}} {
			for j := r[0]; j < r[0]+r[1]; j++ {
				if used[j] {
					t.Fatalf("%s: output %d used twice", l.Name, j)
				}
				used[j] = true
			}
		}
	}
	for j, u := range used {
		if !u {
			t.Fatalf("output %d unused", j)
		}
	}
}
