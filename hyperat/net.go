// Package hyperat makes a pretrained ViT robust with HyperAT: a shared
// hypernetwork generates, for each defense (an attack plus a loss), a LoRA
// on every adapted linear layer; a defense is sampled per iteration; the
// generated deltas are merged into the weights at the end. The baselines
// (plain LoRA and full fine-tuning with one defense) use the same machinery.
//
// The package holds what a run leaves as data and writes no file: the
// finished tuning (Trainer.Tuned), the trainer's state (Trainer.Snapshot,
// Restore) and the records Run gives to a Store; package workspace keeps
// them in a workspace.
package hyperat

import (
	"fmt"
	"slices"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
)

// Net is the pretrained model prepared for tuning: a LoRA branch on each
// target whose factors are graph inputs, and trainable weights (the head,
// or every weight for full fine-tuning) turned into graph inputs too. The
// caller owns all trained tensors and feeds them at every run, so one set of
// parameters serves every compiled program.
type Net struct {
	G       *graph.Graph
	X       *graph.Value
	Targets []lora.Layer
	// A[i], B[i] are the factors of Targets[i]: A [r, in], B [out, r].
	A, B  []*graph.Value
	Rank  int
	Scale float32         // alpha / r
	Train []*graph.Value  // trained weights (graph inputs), in a fixed order
	Init  []*graph.Tensor // their pretrained values (the model's own tensors: read only)
	// TrainKeys name the trained weights in the tuning result.
	TrainKeys []layers.WeightKey
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
	// linears[i] is Targets[i]'s layer in G and sums[i] its product with the
	// branch added, for the merged programs; merged[i] holds its merged
	// weight between runs.
	linears []*layers.Linear
	sums    []*graph.Value
	merged  []*graph.Tensor
	// unpaired: the training program did not compile at twice the batch
	// (a model with a fixed batch), so PairGrads makes two passes.
	unpaired bool
}

type vjp struct {
	p    *compile.Program
	seed *graph.Value
	wrt  []*graph.Value // in the order of the graph inputs they come from
	// merged: the program reads each target's merged weight W0 + scale B A
	// (inputs after the others) instead of running its LoRA branch.
	merged bool
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

// NewNet builds the tuning graph on a copy of an imported model's graph
// (m is left as it was).
func NewNet(m *graph.Graph, o NetOptions) (*Net, error) {
	if len(m.Inputs) != 1 || len(m.Inputs[0].Shape) != 4 {
		return nil, fmt.Errorf("not an image classifier: want one input [N, C, H, W]")
	}
	classes, err := Classes(m)
	if err != nil {
		return nil, err
	}
	g := m.Clone()
	rep, err := layers.Recognize(g)
	if err != nil {
		return nil, err
	}
	x := g.Inputs[0]
	g.Outputs = g.Outputs[:1]
	n := &Net{G: g, X: x, Rank: o.Rank, Scale: o.Alpha / float32(max(o.Rank, 1)), Classes: classes,
		C: x.Shape[1].N, H: x.Shape[2].N, W: x.Shape[3].N,
		attack: map[int]*vjp{}, train: map[int]*vjp{}, attackBF16: map[int]*vjp{}, arena: compile.NewArena()}
	if !o.TrainAll && !o.NoLoRA {
		if err := rep.Tunable(); err != nil {
			return nil, err
		}
		n.adapt(rep, o.Kinds)
		if len(n.Targets) == 0 {
			return nil, fmt.Errorf("no linear layer of the chosen kinds was recognized in the model")
		}
	}
	trained, err := trainedUses(g, rep, o)
	if err != nil {
		return nil, err
	}
	if err := n.makeTrained(trained); err != nil {
		return nil, err
	}
	return n, nil
}

// Classes is the number of logits of an image classifier: the last dim of
// its first output, [N, classes], as the file declares it, or, in a file
// that declares none, as a forward at batch 1 infers it.
func Classes(g *graph.Graph) (int, error) {
	if len(g.Outputs) == 0 {
		return 0, fmt.Errorf("not an image classifier: no output")
	}
	if s := g.Outputs[0].Shape; len(s) == 2 && s[1].N > 0 {
		return s[1].N, nil
	}
	p, err := compile.Compile(g, compile.Options{Batch: 1})
	if err != nil {
		return 0, err
	}
	out := p.Outputs[0].StaticShape()
	if len(out) != 2 {
		return 0, fmt.Errorf("not an image classifier: output shape %v", out)
	}
	return out[1], nil
}

// adapt inserts a LoRA branch, its factors graph inputs, at every layer of
// the chosen kinds in the transformer blocks.
func (n *Net) adapt(rep *layers.Report, kinds map[string]bool) {
	g := n.G
	for _, l := range rep.Targets() {
		if l.Kind == layers.KindHead || !kinds[l.Kind] || l.Block < 0 {
			continue
		}
		a := g.AddInput("lora_A."+l.Name, graph.Float32, graph.StaticShape(n.Rank, l.In))
		b := g.AddInput("lora_B."+l.Name, graph.Float32, graph.StaticShape(l.Out, n.Rank))
		n.sums = append(n.sums, lora.Insert(g, l, a, b, n.Scale))
		n.linears = append(n.linears, l)
		n.merged = append(n.merged, l.Weight.Const.Clone())
		n.Targets = append(n.Targets, lora.Describe(l))
		n.A = append(n.A, a)
		n.B = append(n.B, b)
	}
}

// trainedUse is a weight to train: the initializer, and the one node that
// reads the trained copy (nil: every reader).
type trainedUse struct {
	w      *graph.Value
	reader *graph.Node
}

// trainedUses lists the weights trained besides the LoRA factors: every
// float weight, one per reader when several read it (full fine-tuning), or
// the head's weight and bias.
func trainedUses(g *graph.Graph, rep *layers.Report, o NetOptions) ([]trainedUse, error) {
	var trained []trainedUse
	switch {
	case o.TrainAll:
		readers := g.Consumers()
		for _, p := range slices.Clone(g.Params) {
			if p.DType != graph.Float32 || p.Const.Numel() <= 1 {
				continue
			}
			if rs := readers[p]; len(rs) > 1 {
				for _, r := range rs {
					trained = append(trained, trainedUse{p, r})
				}
			} else {
				trained = append(trained, trainedUse{p, nil})
			}
		}
	case o.TrainHead:
		h := rep.Head
		if h == nil {
			return nil, fmt.Errorf("no classifier head was recognized; train without the head")
		}
		trained = append(trained, trainedUse{h.Weight, h.Reader})
		if h.Bias != nil {
			bn := h.BiasNode
			if bn == nil {
				bn = h.Node
			}
			trained = append(trained, trainedUse{h.Bias, bn})
		}
	}
	return trained, nil
}

// makeTrained turns each trained weight into a graph input; an initializer
// that other nodes read too is copied, and only the trained node reads the
// copy.
func (n *Net) makeTrained(trained []trainedUse) error {
	g := n.G
	readers := g.Consumers()
	for _, u := range trained {
		p := u.w
		if !p.Param && p.Const == nil {
			continue // already made an input
		}
		if u.reader == nil || len(readers[p]) == 1 {
			n.Init = append(n.Init, g.ParamToInput(p))
			n.Train = append(n.Train, p)
			n.TrainKeys = append(n.TrainKeys, layers.WeightKey{Init: p.Name})
			continue
		}
		key := layers.WeightKey{Init: p.Name, Reader: u.reader.Outputs[0].Name}
		cp := g.AddInput(key.String(), graph.Float32, graph.StaticShape(p.Const.Shape...))
		if err := layers.Redirect(g, key, cp); err != nil {
			return err
		}
		n.Init = append(n.Init, p.Const.Clone())
		n.Train = append(n.Train, cp)
		n.TrainKeys = append(n.TrainKeys, key)
	}
	return nil
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
	for i, l := range n.linears {
		w := n.merged[i]
		copy(w.F, l.Weight.Const.F)
		lora.Merge(w, l.Transposed, ps.A[i], ps.B[i], n.Scale)
	}
}

// program compiles (once per batch size) a vector-Jacobian program of the
// logits with respect to the input (the attacks) or to the parameters
// (training): the LoRA factors, through their branches, and the trained
// weights; with its matrix products in precision prec (kernels.FP32 for
// training).
func (n *Net) program(batch int, forTraining bool, prec kernels.Precision) (*vjp, error) {
	cache := n.cache(forTraining, prec)
	if v, ok := cache[batch]; ok {
		return v, nil
	}
	v, g, opts := n.programSpec(batch, forTraining, prec)
	p, err := compile.Compile(g, opts)
	if err != nil {
		return nil, err
	}
	v.p = p
	cache[batch] = v
	return v, nil
}

// cache holds the compiled programs of one kind, by batch.
func (n *Net) cache(forTraining bool, prec kernels.Precision) map[int]*vjp {
	switch {
	case forTraining:
		return n.train
	case prec == kernels.BF16:
		return n.attackBF16
	}
	return n.attack
}

// programSpec is the graph and options of program's vector-Jacobian
// program (v without its compiled program), for compiling or planning.
func (n *Net) programSpec(batch int, forTraining bool, prec kernels.Precision) (*vjp, *graph.Graph, compile.Options) {
	v := &vjp{}
	var g *graph.Graph
	if forTraining {
		g = n.G.Clone()
		v.wrt = g.Inputs[1 : 1+2*len(n.A)+len(n.Train)]
	} else {
		g, v.merged = n.mergedGraph(), len(n.linears) > 0
		v.wrt = g.Inputs[:1]
	}
	// the parameters are read where the net keeps them (see inputs), not
	// copied into every program: with several programs (attack and
	// training, per batch size and precision) those copies would be most of
	// a large model's memory
	params := slices.Clone(g.Inputs[1:])
	v.seed = g.AddInput("logits_cotangent", graph.Float32, graph.StaticShape(batch, n.Classes))
	return v, g, compile.Options{Batch: batch, Arena: n.arena, Precision: prec, Borrowed: params,
		Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: v.seed, Wrt: v.wrt}}
}

// planProgram is the memory program(batch, forTraining, prec) holds: that
// of the compiled program when there is one, else as compile.Plan says.
func (n *Net) planProgram(batch int, forTraining bool, prec kernels.Precision) (compile.Memory, error) {
	if v, ok := n.cache(forTraining, prec)[batch]; ok {
		return v.p.Memory(), nil
	}
	_, g, opts := n.programSpec(batch, forTraining, prec)
	return compile.Plan(g, opts)
}

// mergedGraph is G with each adapted layer reading its merged weight W0 +
// scale B A, a graph input after the others, instead of running its LoRA
// branch: the model then costs what the pretrained one costs, and the
// branches become dead code. The attacks run it: they need no gradient of
// the factors.
func (n *Net) mergedGraph() *graph.Graph {
	g, vm, nm := n.G.CloneMapped()
	for i, l := range n.linears {
		g.ReplaceUses(vm[n.sums[i]], vm[l.Node.Outputs[0]])
		w := g.AddInput("merged."+n.Targets[i].Name, graph.Float32, graph.StaticShape(l.Weight.Const.Shape...))
		rd := nm[l.Reader]
		for j, in := range rd.Inputs {
			if in == vm[l.Weight] {
				rd.Inputs[j] = w
			}
		}
	}
	return g
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
// as Params): the training program runs the LoRA branches, and its reverse
// mode differentiates them like any other node. It returns the logits (the
// caller's).
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
// ParamGrads alone, and the attack program with its products in attack.
func (n *Net) Prepare(batch int, pairs, singles bool, attack kernels.Precision) error {
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
	_, err := n.program(batch, false, attack)
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

func addTo(dst, src *graph.Tensor) {
	for i, s := range src.F {
		dst.F[i] += s
	}
}
