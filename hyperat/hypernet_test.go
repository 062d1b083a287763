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
		// a second stage at twice the width, as in Swin or MaxViT
		{Name: "stages.1.0.attn.qkv", Kind: "qkv", Block: 2, In: 8, Out: 24},
		{Name: "stages.1.0.mlp.fc1", Kind: "fc1", Block: 2, In: 8, Out: 16},
	}
}

// A kind at several shapes gets one pair of heads per shape; its first
// shape keeps the plain names.
func TestHypernetHeadsPerShape(t *testing.T) {
	h, _, err := NewHypernet(testTargets(), 2, 3, HyperOptions{EmbedDim: 5, Hidden: 7}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, n := range h.Names {
		names[n] = true
	}
	for _, n := range []string{"head_A.qkv.weight", "head_B.qkv.bias", "head_A.qkv@8x24.weight", "head_B.qkv@8x24.bias",
		"head_A.fc1.weight", "head_A.fc1@8x16.bias"} {
		if !names[n] {
			t.Errorf("no parameter %s in %v", n, h.Names)
		}
	}
}

func factors(ts []lora.Layer, rank int) (A, B []*graph.Tensor) {
	for _, t := range ts {
		A = append(A, graph.NewTensor(graph.Float32, []int{rank, t.In}))
		B = append(B, graph.NewTensor(graph.Float32, []int{t.Out, rank}))
	}
	return
}

// B starts at zero for every defense, and A differs between defenses.
func TestHypernetStartsAtZeroDelta(t *testing.T) {
	ts := testTargets()
	h, params, err := NewHypernet(ts, 2, 3, HyperOptions{EmbedDim: 5, Hidden: 7}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	A0, B0 := factors(ts, 2)
	A1, B1 := factors(ts, 2)
	h.Generate(0, params, A0, B0)
	h.Generate(1, params, A1, B1)
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
func TestHypernetGradient(t *testing.T) {
	ts := testTargets()
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
			fd := (fp - fm) / (2 * hstep)
			if math.Abs(fd-float64(acc[pi].F[j])) > 5e-3*scale {
				t.Fatalf("%s[%d]: gradient %g, central difference %g", h.Names[pi], j, acc[pi].F[j], fd)
			}
		}
	}
}
