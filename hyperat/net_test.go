package hyperat

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

func randTensor(r *rand.Rand, scale float64, shape ...int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, shape)
	for i := range t.F {
		t.F[i] = float32(scale * r.NormFloat64())
	}
	return t
}

// testNets hold weights stored [in, out] (MatMul) and [out, in] (Gemm transB).
var testNets = []string{"hf_vit_op16.onnx", "tv_vit_op17.onnx", "mnist_vit_op17.onnx"}

// loadTestNet adapts every kind of layer of a fixture model, rank 4, head trained.
func loadTestNet(t *testing.T, file string) *Net {
	t.Helper()
	m, err := onnximport.Load(testutil.Fixture("models", file))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{"qkv": true, "q": true, "k": true, "v": true, "proj": true, "fc1": true, "fc2": true}
	net, err := NewNet(m.Graph, NetOptions{Rank: 4, Alpha: 8, Kinds: kinds, TrainHead: true})
	if err != nil {
		t.Fatal(err)
	}
	return net
}

// NewNet leaves the model it is given as it was, whatever it adapts and
// trains (the head here, every weight for full fine-tuning).
func TestNewNetLeavesTheModel(t *testing.T) {
	m, err := onnximport.Load(testutil.Fixture("models", "tv_vit_op17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	snapshot := func() string {
		s := g.String()
		for _, p := range g.Params {
			s += fmt.Sprintf("%s %v %v\n", p.Name, p.Param, p.Const != nil)
		}
		return s + fmt.Sprint(len(g.Inputs), len(g.Outputs))
	}
	before := snapshot()
	kinds := map[string]bool{"qkv": true, "proj": true, "fc1": true, "fc2": true}
	for _, o := range []NetOptions{{Rank: 2, Alpha: 4, Kinds: kinds, TrainHead: true}, {TrainAll: true, NoLoRA: true}} {
		net, err := NewNet(g, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(net.Train) == 0 || net.Classes != 10 {
			t.Fatalf("%d trained weights, %d classes", len(net.Train), net.Classes)
		}
		if after := snapshot(); after != before {
			t.Fatalf("NewNet changed the model's graph")
		}
	}
}

// The class count is the first output's last dim as the file declares it,
// or, when it declares none, as a forward infers it.
func TestClasses(t *testing.T) {
	m, err := onnximport.Load(testutil.Fixture("models", "hf_vit_op16.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Graph.Outputs[0].Shape.String(); s != "[batch,10]" {
		t.Errorf("declared output shape %s, want [batch,10]", s)
	}
	for _, declared := range []bool{true, false} {
		if !declared {
			m.Graph.Outputs[0].Shape = nil
		}
		if c, err := Classes(m.Graph); err != nil || c != 10 {
			t.Errorf("declared %v: %d classes (%v), want 10", declared, c, err)
		}
	}
}

// The attack programs read merged weights instead of running the LoRA
// branches: their logits and input gradients must be those of the branches,
// for weights stored [in, out] (MatMul) and [out, in] (Gemm transB), and no
// branch may be left in them.
func TestMergedAttackProgramEqualsBranches(t *testing.T) {
	for _, f := range testNets {
		net := loadTestNet(t, f)
		layouts := map[bool]int{}
		r := rand.New(rand.NewPCG(1, 2))
		ps := &Params{Train: net.Init}
		for _, tg := range net.Targets {
			layouts[tg.Transposed]++
			ps.A = append(ps.A, randTensor(r, 0.1, net.Rank, tg.In))
			ps.B = append(ps.B, randTensor(r, 0.1, tg.Out, net.Rank))
		}
		const batch = 3
		x := randTensor(r, 1, batch, net.C, net.H, net.W)
		ct := randTensor(r, 1, batch, net.Classes)
		logits, grad, err := net.InputGrad(x, ps, func(*graph.Tensor) *graph.Tensor { return ct })
		if err != nil {
			t.Fatal(err)
		}
		v := net.attack[batch]
		if !v.merged {
			t.Fatalf("%s: the attack program is not merged", f)
		}
		for _, n := range v.p.Graph.Nodes {
			for _, in := range n.Inputs {
				if in != nil && len(in.Name) > 5 && in.Name[:5] == "lora_" {
					t.Fatalf("%s: node %s still reads %s", f, n.Name, in.Name)
				}
			}
		}

		// the reference: the graph with its branches, differentiated w.r.t. x
		g := net.G.Clone()
		seed := g.AddInput("ct", graph.Float32, graph.StaticShape(batch, net.Classes))
		p, err := compile.Compile(g, compile.Options{Batch: batch,
			Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: g.Inputs[:1]}})
		if err != nil {
			t.Fatal(err)
		}
		ins := []*graph.Tensor{x}
		for i := range ps.A {
			ins = append(ins, ps.A[i], ps.B[i])
		}
		ins = append(ins, ps.Train...)
		outs, err := p.Forward(ins...)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Backward(ct); err != nil {
			t.Fatal(err)
		}
		// float32 rounding of a sum reordered (W0 x + s (x A^T) B^T against
		// (W0 + s B A) x) through a dozen layers: relative 1e-4 of the scale
		check := func(what string, got, want []float32) {
			var scale float64
			for _, w := range want {
				scale = math.Max(scale, math.Abs(float64(w)))
			}
			if d := testutil.MaxAbsDiff(got, want); d > 1e-4*scale || math.IsNaN(d) {
				t.Errorf("%s: merged %s differ from the branches' by %g (scale %g)", f, what, d, scale)
			}
		}
		check("logits", logits.F, outs[0].F)
		check("input gradients", grad.F, p.Grad(g.Inputs[0]).F)
		// and the branches do change the model: the test is not vacuous
		base, err := onnximport.Load(testutil.Fixture("models", f))
		if err != nil {
			t.Fatal(err)
		}
		bp, err := compile.Compile(base.Graph, compile.Options{Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		bo, err := bp.Run(x)
		if err != nil {
			t.Fatal(err)
		}
		if d := testutil.MaxAbsDiff(bo[0].F, logits.F); d < 1e-3 {
			t.Errorf("%s: the LoRA branches changed the logits by only %g", f, d)
		}
		t.Logf("%s: %d targets stored [out, in], %d [in, out]", f, layouts[true], layouts[false])
	}
}

// randomParams draws LoRA factors for every target of net (the pretrained
// trained weights), and a zero accumulator of their gradients.
func randomParams(net *Net, r *rand.Rand) (ps, acc *Params) {
	ps, acc = &Params{Train: net.Init}, &Params{}
	for _, tg := range net.Targets {
		ps.A = append(ps.A, randTensor(r, 0.1, net.Rank, tg.In))
		ps.B = append(ps.B, randTensor(r, 0.1, tg.Out, net.Rank))
		acc.A = append(acc.A, graph.NewTensor(graph.Float32, []int{net.Rank, tg.In}))
		acc.B = append(acc.B, graph.NewTensor(graph.Float32, []int{tg.Out, net.Rank}))
	}
	for _, w := range net.Init {
		acc.Train = append(acc.Train, graph.NewTensor(graph.Float32, w.Shape))
	}
	return ps, acc
}

// The training program differentiates the LoRA branches with the gradient
// compiler. Its factor gradients must be those the chain rule gives through
// the merged weight W = W0 + s B A of each layer: with dW the gradient of
// the merged program with respect to W ([out, in] layout), dB = s dW A^T and
// dA = s B^T dW. The head's gradient must be the merged program's too.
func TestFactorGradsFollowTheMergedWeight(t *testing.T) {
	for _, f := range testNets {
		net := loadTestNet(t, f)
		r := rand.New(rand.NewPCG(7, 8))
		ps, acc := randomParams(net, r)
		const batch = 3
		x := randTensor(r, 1, batch, net.C, net.H, net.W)
		ct := randTensor(r, 1, batch, net.Classes)
		// twice, as TRADES and MART do (the gradients add up)
		for k := 0; k < 2; k++ {
			if _, err := net.ParamGrads(x, ps, func(*graph.Tensor) *graph.Tensor { return ct }, acc); err != nil {
				t.Fatal(err)
			}
		}
		// the reference: the merged graph, differentiated w.r.t. the merged
		// weights and the head
		g := net.mergedGraph()
		first := 1 + 2*len(net.A)
		wrt := slices.Concat(g.Inputs[len(g.Inputs)-len(net.Targets):], g.Inputs[first:first+len(net.Train)])
		seed := g.AddInput("ct", graph.Float32, graph.StaticShape(batch, net.Classes))
		p, err := compile.Compile(g, compile.Options{Batch: batch, Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: wrt}})
		if err != nil {
			t.Fatal(err)
		}
		ins, err := net.inputs(x, ps, &vjp{merged: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Forward(ins...); err != nil {
			t.Fatal(err)
		}
		if err := p.Backward(ct); err != nil {
			t.Fatal(err)
		}
		check := func(what string, got []float32, want []float64) {
			var scale, d float64
			for i, w := range want {
				scale = math.Max(scale, math.Abs(w))
				d = math.Max(d, math.Abs(float64(got[i])/2-w))
			}
			if d > 1e-4*scale || math.IsNaN(d) || scale == 0 {
				t.Errorf("%s: %s differ from the chain rule's by %g (scale %g)", f, what, d, scale)
			}
		}
		s := float64(net.Scale)
		for i, tg := range net.Targets {
			dW := p.Grad(wrt[i]).F
			dw := func(o, j int) float64 { // dW in [out, in]
				if tg.Transposed {
					return float64(dW[o*tg.In+j])
				}
				return float64(dW[j*tg.Out+o])
			}
			A, B, rank := ps.A[i].F, ps.B[i].F, net.Rank
			dA, dB := make([]float64, len(A)), make([]float64, len(B))
			for o := 0; o < tg.Out; o++ {
				for j := 0; j < tg.In; j++ {
					d := s * dw(o, j)
					for k := 0; k < rank; k++ {
						dB[o*rank+k] += d * float64(A[k*tg.In+j])
						dA[k*tg.In+j] += d * float64(B[o*rank+k])
					}
				}
			}
			check(fmt.Sprint("A gradients of ", tg.Name), acc.A[i].F, dA)
			check(fmt.Sprint("B gradients of ", tg.Name), acc.B[i].F, dB)
		}
		for i := range net.Train {
			want := make([]float64, len(acc.Train[i].F))
			for j, v := range p.Grad(wrt[len(net.Targets)+i]).F {
				want[j] = float64(v)
			}
			check("head gradients", acc.Train[i].F, want)
		}
	}
}

// PairGrads stacks the clean and adversarial batches into one pass; the
// loss and gradients must be those of two passes (its fallback), for a loss
// that reads both logits. A model whose batch dim is fixed must take the
// fallback and still give them.
func TestPairGradsEqualsTwoPasses(t *testing.T) {
	for _, f := range testNets {
		run := func(unpaired, fixed bool) (*Params, float64) {
			net := loadTestNet(t, f)
			net.unpaired = unpaired
			r := rand.New(rand.NewPCG(3, 4))
			ps, acc := randomParams(net, r)
			const batch = 3
			if fixed {
				net.X.Shape[0] = graph.Dim{N: batch}
			}
			x := randTensor(r, 1, batch, net.C, net.H, net.W)
			adv := x.Clone()
			for i := range adv.F {
				adv.F[i] += float32(0.1 * r.NormFloat64())
			}
			y := []int{0, 1, 2}
			var loss float64
			err := net.PairGrads(x, adv, ps, func(zc, za *graph.Tensor) (*graph.Tensor, *graph.Tensor) {
				var gc, ga *graph.Tensor
				loss, gc, ga = trades{6}.Loss(zc, za, y)
				return gc, ga
			}, acc)
			if err != nil {
				t.Fatal(err)
			}
			if fixed && !net.unpaired {
				t.Fatalf("%s: a model of fixed batch %d was run stacked", f, batch)
			}
			return acc, loss
		}
		want, wl := run(true, false)
		for _, fixed := range []bool{false, true} {
			got, gl := run(false, fixed)
			if math.Abs(gl-wl) > 1e-5*math.Abs(wl) || math.IsNaN(gl) {
				t.Errorf("%s (fixed batch %v): loss %g, two passes %g", f, fixed, gl, wl)
			}
			check := func(what string, g, w []float32) {
				var scale float64
				for _, v := range w {
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				if d := testutil.MaxAbsDiff(g, w); d > 1e-5*scale || math.IsNaN(d) || scale == 0 {
					t.Errorf("%s (fixed batch %v): %s differ from two passes' by %g (scale %g)", f, fixed, what, d, scale)
				}
			}
			for i := range want.A {
				check(fmt.Sprint("A gradients ", i), got.A[i].F, want.A[i].F)
				check(fmt.Sprint("B gradients ", i), got.B[i].F, want.B[i].F)
			}
			for i := range want.Train {
				check("head gradients", got.Train[i].F, want.Train[i].F)
			}
		}
	}
}
