// Package hyperat makes a pretrained ViT robust with HyperAT: a shared
// hypernetwork generates, for each defense (an attack plus a loss), a LoRA
// on every adapted linear layer; a defense is sampled per iteration; the
// generated deltas are merged into the weights at the end. The baselines
// (plain LoRA and full fine-tuning with one defense) use the same machinery.
package hyperat

import (
	"fmt"
	"slices"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/kernels"
	"github.com/hyperat/hyperat/nn"
)

// Target is one adapted linear layer.
type Target struct {
	Name       string
	Kind       string
	Block      int
	In, Out    int
	Weight     string // the initializer holding W in the original model
	Transposed bool   // W is stored [out, in] (else [in, out])
	// Key names the merged weight in the tuning result: the initializer's
	// name, or "initializer@output" when other nodes read the initializer
	// too (an exporter deduplicated identical tensors): then only the node
	// whose first output is named gets the new weight.
	Key string
}

// WeightKey is how a tuning result names a new weight: the initializer, or,
// when the initializer is shared, the initializer as read by one node
// (identified by its first output's name, unique in ONNX).
func WeightKey(init string, shared bool, reader string) string {
	if !shared {
		return init
	}
	return init + "@" + reader
}

// reader returns the node that reads initializer w on the way to node n:
// n itself, or the layout node (Transpose) between them.
func reader(uses map[*graph.Value][]*graph.Node, w *graph.Value, n *graph.Node) *graph.Node {
	for _, u := range uses[w] {
		if u == n {
			return u
		}
		for _, o := range u.Outputs {
			for _, in := range n.Inputs {
				if in == o {
					return u
				}
			}
		}
	}
	return n
}

// Net is the pretrained model prepared for tuning: a LoRA branch on each
// target whose factors are graph inputs, and trainable weights (the head,
// or every weight for full fine-tuning) turned into graph inputs too. The
// caller owns all trained tensors and feeds them at every run, so one set of
// parameters serves every compiled program.
type Net struct {
	G       *graph.Graph
	X       *graph.Value
	Targets []Target
	// A[i], B[i] are the factors of Targets[i]: A [r, in], B [out, r].
	A, B  []*graph.Value
	Rank  int
	Scale float32         // alpha / r
	Train []*graph.Value  // trained weights (graph inputs), in a fixed order
	Init  []*graph.Tensor // their pretrained values
	// TrainKeys name the trained weights in the tuning result (see WeightKey).
	TrainKeys []string
	Classes   int
	C, H, W   int

	attack map[int]*vjp
	train  map[int]*vjp
	// attackBF16 holds the attack programs whose products are bfloat16
	// (kernels.BF16): the training attacks with Config.AttackPrecision bf16.
	attackBF16 map[int]*vjp
	// arena holds the activations of all these programs: each method runs
	// one program to the end and copies out what it keeps before the next.
	arena *compile.Arena
	// sites[i] is where Targets[i]'s branch sits, for the merged programs;
	// merged[i] holds its merged weight between runs.
	sites  []loraSite
	merged []*graph.Tensor
	// branchTraining makes the training programs run the LoRA branches
	// (the reference the merged training is tested against).
	branchTraining bool
	// unpaired: the training program did not compile at twice the batch
	// (a model with a fixed batch), so PairGrads makes two passes.
	unpaired bool
	u, w     []float32 // scratch of ParamGrads
}

// loraSite is one LoRA branch in G: the node reading the weight, the
// weight, the layer's output without and with the branch.
type loraSite struct {
	node   *graph.Node // the layer's product
	reader *graph.Node
	weight *graph.Value
	y, sum *graph.Value
}

type vjp struct {
	p    *compile.Program
	seed *graph.Value
	wrt  []*graph.Value // in the order of the graph inputs they come from
	// merged: the program reads each target's merged weight W0 + scale B A
	// (inputs after the others) instead of running its LoRA branch.
	merged bool
	// For a merged training program: out[i] is the output index of
	// Targets[i]'s layer input x, ys[i] its product's output y, whose
	// gradient with x gives the factors' gradients (see ParamGrads).
	out []int
	ys  []*graph.Value
}

// NetOptions choose what is adapted and what is trained.
type NetOptions struct {
	Rank       int
	Alpha      float32
	Kinds      map[string]bool // adapted layer kinds (qkv q k v proj fc1 fc2)
	TrainHead  bool
	TrainAll   bool // full fine-tuning: every float weight is trained, no LoRA
	NoLoRA     bool
	BatchShape []int // [C, H, W]
}

// NewNet builds the tuning graph from a freshly imported model.
func NewNet(m *onnximport.Model, o NetOptions) (*Net, error) {
	rep, err := onnximport.Recognize(m)
	if err != nil {
		return nil, err
	}
	g := m.Graph
	if len(g.Inputs) != 1 || len(g.Inputs[0].Shape) != 4 {
		return nil, fmt.Errorf("not an image classifier: want one input [N, C, H, W]")
	}
	x := g.Inputs[0]
	g.Outputs = g.Outputs[:1]
	n := &Net{G: g, X: x, Rank: o.Rank, Scale: o.Alpha / float32(max(o.Rank, 1)),
		C: x.Shape[1].N, H: x.Shape[2].N, W: x.Shape[3].N,
		attack: map[int]*vjp{}, train: map[int]*vjp{}, attackBF16: map[int]*vjp{}, arena: compile.NewArena()}
	uses := g.Consumers()
	if !o.TrainAll && !o.NoLoRA {
		for _, l := range rep.Targets() {
			if l.Kind == onnximport.KindHead || !o.Kinds[l.Kind] || l.Block < 0 {
				continue
			}
			t := Target{Name: l.Name, Kind: l.Kind, Block: l.Block, In: l.In, Out: l.Out,
				Weight: l.Weight.Name, Transposed: l.Transposed,
				Key: WeightKey(l.Weight.Name, len(uses[l.Weight]) > 1, reader(uses, l.Weight, l.Node).Outputs[0].Name)}
			a := g.AddInput("lora_A."+l.Name, graph.Float32, graph.StaticShape(o.Rank, l.In))
			b := g.AddInput("lora_B."+l.Name, graph.Float32, graph.StaticShape(l.Out, o.Rank))
			rd := reader(uses, l.Weight, l.Node)
			sum := nn.LoRA(g, l.Node, a, b, n.Scale)
			n.sites = append(n.sites, loraSite{node: l.Node, reader: rd, weight: l.Weight, y: l.Node.Outputs[0], sum: sum})
			n.merged = append(n.merged, l.Weight.Const.Clone())
			n.Targets = append(n.Targets, t)
			n.A = append(n.A, a)
			n.B = append(n.B, b)
		}
		if len(n.Targets) == 0 {
			return nil, fmt.Errorf("no linear layer of the chosen kinds was recognized in the model")
		}
	}
	// trained weights: each becomes a graph input; an initializer that other
	// nodes read too is copied, and only the trained nodes read the copy
	type use struct {
		w       *graph.Value
		readers []*graph.Node // nil: every reader
	}
	var trained []use
	switch {
	case o.TrainAll:
		for _, p := range append([]*graph.Value{}, g.Params...) {
			if p.DType != graph.Float32 || p.Const.Numel() <= 1 {
				continue
			}
			if rs := uses[p]; len(rs) > 1 {
				for _, r := range rs {
					trained = append(trained, use{p, []*graph.Node{r}})
				}
			} else {
				trained = append(trained, use{p, nil})
			}
		}
	case o.TrainHead:
		h := rep.Head
		if h == nil {
			return nil, fmt.Errorf("no classifier head was recognized; train without the head")
		}
		trained = append(trained, use{h.Weight, []*graph.Node{reader(uses, h.Weight, h.Node)}})
		if h.Bias != nil {
			bn := h.BiasNode
			if bn == nil {
				bn = h.Node
			}
			trained = append(trained, use{h.Bias, []*graph.Node{bn}})
		}
	}
	for _, u := range trained {
		p := u.w
		if !p.Param && p.Const == nil {
			continue // already made an input
		}
		if u.readers == nil || len(uses[p]) == 1 {
			n.Init = append(n.Init, g.ParamToInput(p))
			n.Train = append(n.Train, p)
			n.TrainKeys = append(n.TrainKeys, p.Name)
			continue
		}
		r := u.readers[0]
		cp := g.AddInput(p.Name+"@"+r.Outputs[0].Name, graph.Float32, graph.StaticShape(p.Const.Shape...))
		for i, in := range r.Inputs {
			if in == p {
				r.Inputs[i] = cp
			}
		}
		n.Init = append(n.Init, p.Const.Clone())
		n.Train = append(n.Train, cp)
		n.TrainKeys = append(n.TrainKeys, WeightKey(p.Name, true, r.Outputs[0].Name))
	}
	// the number of classes, from a forward at batch 1
	p, err := compile.Compile(g, compile.Options{Batch: 1})
	if err != nil {
		return nil, err
	}
	out := p.Outputs[0].StaticShape()
	if len(out) != 2 {
		return nil, fmt.Errorf("not an image classifier: output shape %v", out)
	}
	n.Classes = out[1]
	return n, nil
}

// Params are the values fed besides the image: LoRA factors, then trained weights.
type Params struct {
	A, B  []*graph.Tensor
	Train []*graph.Tensor
}

func (n *Net) inputs(x *graph.Tensor, ps *Params, v *vjp) ([]*graph.Tensor, error) {
	ins := []*graph.Tensor{x}
	for i := range n.A {
		ins = append(ins, ps.A[i], ps.B[i])
	}
	ins = append(ins, ps.Train...)
	if len(ins) != len(n.G.Inputs) {
		return nil, fmt.Errorf("internal: %d inputs for %d graph inputs", len(ins), len(n.G.Inputs))
	}
	if v.merged {
		n.merge(ps)
		ins = append(ins, n.merged...)
	}
	return ins, nil
}

// merge sets n.merged[i] to Targets[i]'s weight with its branch folded in,
// W0 + scale (B A) in W0's layout: [out, in] when Transposed, else [in, out].
func (n *Net) merge(ps *Params) {
	r := n.Rank
	for i, t := range n.Targets {
		w := n.merged[i]
		copy(w.F, n.sites[i].weight.Const.F)
		a, b := ps.A[i].F, ps.B[i].F
		if t.Transposed {
			kernels.Sgemm(false, false, t.Out, t.In, r, n.Scale, b, r, a, t.In, 1, w.F, t.In)
		} else {
			kernels.Sgemm(true, true, t.In, t.Out, r, n.Scale, a, t.In, b, r, 1, w.F, t.Out)
		}
	}
}

// program compiles (once per batch size) a vector-Jacobian program of the
// logits with respect to wrt: the input (attacks) or the parameters
// (training), with its matrix products in precision prec (kernels.FP32 for
// training).
func (n *Net) program(batch int, forTraining bool, prec kernels.Precision) (*vjp, error) {
	cache := n.attack
	switch {
	case forTraining:
		cache = n.train
	case prec == kernels.BF16:
		cache = n.attackBF16
	}
	if v, ok := cache[batch]; ok {
		return v, nil
	}
	g, vm, nm := n.G.CloneMapped()
	// The programs read the merged weights W0 + scale B A instead of running
	// the LoRA branches: the model then costs what the original costs,
	// instead of two thin products, a scale and a sum more per layer in each
	// direction; the branches become dead code and are removed. The attack
	// needs no gradient of the factors; training gets them from each layer's
	// input x and the gradient of its output y (see ParamGrads).
	merged := len(n.sites) > 0 && (!forTraining || n.mergedTraining())
	var ys, xs []*graph.Value
	if merged {
		for i, s := range n.sites {
			g.ReplaceUses(vm[s.sum], vm[s.y])
			w := g.AddInput("merged."+n.Targets[i].Name, graph.Float32, graph.StaticShape(s.weight.Const.Shape...))
			rd := nm[s.reader]
			for j, in := range rd.Inputs {
				if in == vm[s.weight] {
					rd.Inputs[j] = w
				}
			}
			ys = append(ys, vm[s.y])
			xs = append(xs, vm[s.node.Inputs[0]])
		}
	}
	var wrt []*graph.Value
	v := &vjp{merged: merged}
	switch {
	case !forTraining:
		wrt = g.Inputs[:1]
	case merged:
		// the layer inputs are kept as outputs (deduplicated: q, k and v
		// read one x); the gradients are those of the layer outputs and of
		// the trained weights
		at := map[*graph.Value]int{}
		for _, x := range xs {
			if _, ok := at[x]; !ok {
				at[x] = len(g.Outputs)
				g.Outputs = append(g.Outputs, x)
			}
			v.out = append(v.out, at[x])
		}
		v.ys = ys
		first := 1 + 2*len(n.A)
		wrt = append(append([]*graph.Value{}, ys...), g.Inputs[first:first+len(n.Train)]...)
	default:
		wrt = g.Inputs[1 : 1+2*len(n.A)+len(n.Train)]
	}
	seed := g.AddInput("logits_cotangent", graph.Float32, graph.StaticShape(batch, n.Classes))
	p, err := compile.Compile(g, compile.Options{Batch: batch, Arena: n.arena, Precision: prec,
		Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: wrt}})
	if err != nil {
		return nil, err
	}
	v.p, v.seed, v.wrt = p, seed, wrt
	cache[batch] = v
	return v, nil
}

// mergedTraining reports whether training can read merged weights: every
// adapted product reads its input x untransposed (MatMul, or Gemm without
// transA), so that x is the [rows, in] matrix the factors' gradients need.
func (n *Net) mergedTraining() bool {
	if n.branchTraining {
		return false
	}
	for _, s := range n.sites {
		if s.node.Op == "Gemm" && s.node.Attrs.Int("transA", 0) != 0 {
			return false
		}
		if s.node.Op != "Gemm" && s.node.Op != "MatMul" {
			return false
		}
	}
	return true
}

// Forward runs the adapted model: logits [N, classes] (owned by the program
// until the next run; clone to keep).
func (n *Net) Forward(x *graph.Tensor, ps *Params) (*graph.Tensor, error) {
	return n.forward(x, ps, kernels.FP32)
}

// forward is Forward with the matrix products in precision prec.
func (n *Net) forward(x *graph.Tensor, ps *Params, prec kernels.Precision) (*graph.Tensor, error) {
	v, err := n.program(x.Shape[0], false, prec)
	if err != nil {
		return nil, err
	}
	ins, err := n.inputs(x, ps, v)
	if err != nil {
		return nil, err
	}
	outs, err := v.p.Forward(ins...)
	if err != nil {
		return nil, err
	}
	return outs[0], nil
}

// InputGrad is one forward and one backward: logits, then dL/dx for the
// cotangent seed(logits) = dL/dlogits. Results are the caller's.
func (n *Net) InputGrad(x *graph.Tensor, ps *Params, seed func(*graph.Tensor) *graph.Tensor) (logits, grad *graph.Tensor, err error) {
	return n.inputGrad(x, ps, seed, kernels.FP32)
}

// inputGrad is InputGrad with the matrix products in precision prec.
func (n *Net) inputGrad(x *graph.Tensor, ps *Params, seed func(*graph.Tensor) *graph.Tensor, prec kernels.Precision) (logits, grad *graph.Tensor, err error) {
	v, err := n.program(x.Shape[0], false, prec)
	if err != nil {
		return nil, nil, err
	}
	ins, err := n.inputs(x, ps, v)
	if err != nil {
		return nil, nil, err
	}
	outs, err := v.p.Forward(ins...)
	if err != nil {
		return nil, nil, err
	}
	logits = outs[0].Clone()
	if err := v.p.Backward(seed(logits)); err != nil {
		return nil, nil, err
	}
	return logits, v.p.Grad(v.wrt[0]).Clone(), nil
}

// ParamGrads runs forward on x, takes dL/dlogits from seed, and adds the
// gradients of the LoRA factors and trained weights into acc (same layout
// as Params). It returns the logits (the caller's).
func (n *Net) ParamGrads(x *graph.Tensor, ps *Params, seed func(*graph.Tensor) *graph.Tensor, acc *Params) (*graph.Tensor, error) {
	v, err := n.program(x.Shape[0], true, kernels.FP32)
	if err != nil {
		return nil, err
	}
	ins, err := n.inputs(x, ps, v)
	if err != nil {
		return nil, err
	}
	outs, err := v.p.Forward(ins...)
	if err != nil {
		return nil, err
	}
	logits := outs[0].Clone()
	if err := v.p.Backward(seed(logits)); err != nil {
		return nil, err
	}
	if v.merged {
		n.factorGrads(v, outs, ps, acc)
		for i := range n.Train {
			addTo(acc.Train[i], v.p.Grad(v.wrt[len(n.Targets)+i]))
		}
		return logits, nil
	}
	k := 0
	for i := range n.A {
		addTo(acc.A[i], v.p.Grad(v.wrt[k]))
		addTo(acc.B[i], v.p.Grad(v.wrt[k+1]))
		k += 2
	}
	for i := range n.Train {
		addTo(acc.Train[i], v.p.Grad(v.wrt[k]))
		k++
	}
	return logits, nil
}

// Prepare compiles the programs a tuning run at batch will use, the
// largest first, so that their shared arena is allocated once, at its final
// size, rather than grown (and the smaller block left for the collector)
// when a larger program first runs: pairs for PairGrads, singles for
// ParamGrads alone.
func (n *Net) Prepare(batch int, pairs, singles bool) error {
	if pairs && !n.unpaired {
		if _, err := n.program(2*batch, true, kernels.FP32); err != nil {
			n.unpaired = true
		}
	}
	if singles || (pairs && n.unpaired) {
		if _, err := n.program(batch, true, kernels.FP32); err != nil {
			return err
		}
	}
	_, err := n.program(batch, false, kernels.FP32)
	return err
}

// PairGrads is ParamGrads for a loss of a clean batch x and its adversarial
// twin adv: seed(zc, za) returns dL/dzc and dL/dza. The two run stacked as
// one batch of twice the rows, so the whole loss costs one forward and one
// backward, with products twice as tall. A model that does not compile at
// that batch gets a forward on x and a training pass on each instead.
func (n *Net) PairGrads(x, adv *graph.Tensor, ps *Params, seed func(zc, za *graph.Tensor) (gc, ga *graph.Tensor), acc *Params) error {
	b := x.Shape[0]
	if !slices.Equal(x.Shape, adv.Shape) {
		return fmt.Errorf("internal: pair of shapes %v and %v", x.Shape, adv.Shape)
	}
	if !n.unpaired {
		if _, err := n.program(2*b, true, kernels.FP32); err != nil {
			n.unpaired = true
		}
	}
	if n.unpaired {
		zc, err := n.Forward(x, ps)
		if err != nil {
			return err
		}
		zc = zc.Clone()
		var gc *graph.Tensor
		if _, err := n.ParamGrads(adv, ps, func(za *graph.Tensor) *graph.Tensor {
			var ga *graph.Tensor
			gc, ga = seed(zc, za)
			return ga
		}, acc); err != nil {
			return err
		}
		_, err = n.ParamGrads(x, ps, func(*graph.Tensor) *graph.Tensor { return gc }, acc)
		return err
	}
	_, err := n.ParamGrads(stack(x, adv), ps, func(z *graph.Tensor) *graph.Tensor {
		h := len(z.F) / 2
		rows := append([]int{b}, z.Shape[1:]...)
		gc, ga := seed(graph.F32(rows, z.F[:h]), graph.F32(rows, z.F[h:]))
		return stack(gc, ga)
	}, acc)
	return err
}

// stack concatenates two tensors of one shape along the first dim.
func stack(a, b *graph.Tensor) *graph.Tensor {
	s := graph.NewTensor(graph.Float32, append([]int{2 * a.Shape[0]}, a.Shape[1:]...))
	copy(s.F, a.F)
	copy(s.F[len(a.F):], b.F)
	return s
}

// factorGrads adds the gradients of every target's factors to acc. With x
// the layer input [rows, in], g the gradient of its output [rows, out] and
// the branch scale (x A^T) B^T:
//
//	dB = scale g^T (x A^T)    dA = scale (g B)^T x
//
// what the branch's own backward computes.
func (n *Net) factorGrads(v *vjp, outs []*graph.Tensor, ps *Params, acc *Params) {
	r := n.Rank
	for i, t := range n.Targets {
		x := outs[v.out[i]].F
		g := v.p.Grad(v.ys[i]).F
		rows := len(x) / t.In
		if need := rows * r; len(n.u) < need {
			n.u, n.w = make([]float32, need), make([]float32, need)
		}
		u, w := n.u[:rows*r], n.w[:rows*r]
		kernels.Sgemm(false, true, rows, r, t.In, 1, x, t.In, ps.A[i].F, t.In, 0, u, r)
		kernels.Sgemm(true, false, t.Out, r, rows, n.Scale, g, t.Out, u, r, 1, acc.B[i].F, r)
		kernels.Sgemm(false, false, rows, r, t.Out, 1, g, t.Out, ps.B[i].F, r, 0, w, r)
		kernels.Sgemm(true, false, r, t.In, rows, n.Scale, w, r, x, t.In, 1, acc.A[i].F, t.In)
	}
}

func addTo(dst, src *graph.Tensor) {
	for i, s := range src.F {
		dst.F[i] += s
	}
}
