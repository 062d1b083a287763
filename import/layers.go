package onnximport

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hyperat/hyperat/graph"
)

// This file recognizes the tunable linear layers of a transformer from the
// graph's structure alone: no rule knows a model family or a parameter name.
//
//   linear     MatMul(x, W) with W a 2-D float initializer ([in,out]), or
//              Gemm(x, W[, c]) with W a constant 2-D initializer (transB=1: [out,in]),
//              optionally followed by Add(·, b) with b a 1-D constant of size out.
//   attention  Softmax between two activation-by-activation MatMuls:
//              QK = MatMul(q, k^T) -> ... -> Softmax -> ... -> AV = MatMul(·, v).
//   q, k, v    linears whose outputs reach QK's left input (q), QK's right input (k)
//              or AV's right input (v) without crossing another linear; one linear
//              reaching all three is the packed qkv.
//   proj       a linear reading the AV product through layout ops (Transpose, Reshape...).
//   fc1..fcN   the linears between a block's proj and the next block's attention inputs.
//   head       a linear after the last block whose output reaches a graph output
//              without crossing another linear.

// Layer kinds. Attention inputs are named by the operands they feed: "qkv" when
// one linear feeds all three, "q", "k", "v" when they are apart, "kv" (etc.) for
// other packings. MLP layers are "fc1", "fc2", ... in graph order.
const (
	KindQKV    = "qkv"
	KindQ      = "q"
	KindK      = "k"
	KindV      = "v"
	KindProj   = "proj"
	KindFC1    = "fc1"
	KindFC2    = "fc2"
	KindHead   = "head"
	KindLinear = "linear" // a linear outside the recognized structure
)

// Linear is one recognized linear layer: Output = Input·W + Bias.
type Linear struct {
	// Name is the layer's name, recovered from the file where possible
	// ("blocks.3.mlp.fc1"); Structural is set when it was made from the
	// structure instead (timm's scheme).
	Name       string
	Kind       string
	Structural bool
	// Block is the index of the transformer block, -1 outside blocks (the head).
	Block   int
	In, Out int
	// Weight is the initializer holding W: [in,out], or [out,in] when Transposed
	// (Gemm with transB=1, or a MatMul reading Transpose(W)).
	Weight     *graph.Value
	Transposed bool
	// SharedWeight: other nodes read the weight too. Exporters store identical
	// initializers once (copies of one layer, untrained weights), so writing a
	// changed weight back must give this layer an initializer of its own.
	SharedWeight bool
	// Bias is the constant added to the product (Gemm's C or the following Add), or nil.
	Bias *graph.Value
	// Node is the MatMul or Gemm; BiasNode the Add of the bias, when separate.
	Node, BiasNode *graph.Node
	// Input is the activation x; Output the layer's result (after the bias).
	Input, Output *graph.Value
}

func (l *Linear) String() string {
	return fmt.Sprintf("%s (%s, %d->%d)", l.Name, l.Kind, l.In, l.Out)
}

// Block is one transformer block, numbered by its attention in graph order.
type Block struct {
	Index      int
	Name       string
	Structural bool
	// QK and AV are the attention's two activation MatMuls, Softmax between them.
	QK, Softmax, AV *graph.Node
	// Linears are the block's layers in graph order: attention inputs, proj, MLP.
	Linears []*Linear
}

// Report is what Recognize found in a model.
type Report struct {
	// Input is the model's (first) input, with its symbolic batch dim.
	Input *graph.Value
	// Params counts the elements of the float initializers.
	Params int
	Blocks []*Block
	// Linears holds every recognized linear layer in graph order, including the
	// head and any linear outside the blocks (Kind "linear").
	Linears []*Linear
	// Head is the classifier (the first one when there are several), or nil.
	Head *Linear
}

// Targets returns the layers to tune: those in blocks, then the heads.
func (r *Report) Targets() []*Linear {
	var out []*Linear
	for _, b := range r.Blocks {
		out = append(out, b.Linears...)
	}
	for _, l := range r.Linears {
		if l.Kind == KindHead {
			out = append(out, l)
		}
	}
	return out
}

// Recognize finds the transformer blocks and the linear layers of an imported model.
func Recognize(m *Model) (*Report, error) {
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("recognize: no graph")
	}
	g := m.Graph
	r := &recognizer{g: g, consumers: g.Consumers(), index: map[*graph.Node]int{}, byOut: map[*graph.Value]*Linear{}, byNode: map[*graph.Node]*Linear{}}
	for i, n := range g.Nodes {
		r.index[n] = i
	}
	rep := &Report{Params: g.NumParams()}
	for _, in := range g.Inputs {
		if in.DType == graph.Float32 {
			rep.Input = in
			break
		}
	}
	if rep.Input == nil && len(g.Inputs) > 0 {
		rep.Input = g.Inputs[0]
	}
	r.findLinears()
	rep.Linears = r.linears
	r.findBlocks()
	rep.Blocks = r.blocks
	r.classifyRest()
	for _, l := range r.linears {
		if l.Kind == KindHead {
			rep.Head = l
			break
		}
	}
	r.name()
	return rep, nil
}

type recognizer struct {
	g         *graph.Graph
	consumers map[*graph.Value][]*graph.Node
	index     map[*graph.Node]int
	linears   []*Linear                // graph order
	byOut     map[*graph.Value]*Linear // product and output values -> layer
	byNode    map[*graph.Node]*Linear
	blocks    []*Block
}

// ---------------------------------------------------------------------------
// Linear layers

func (r *recognizer) findLinears() {
	for _, n := range r.g.Nodes {
		var l *Linear
		switch n.Op {
		case "MatMul":
			l = r.matmulLinear(n)
		case "Gemm":
			l = r.gemmLinear(n)
		}
		if l == nil {
			continue
		}
		l.Block = -1
		l.Node = n
		l.Input = n.In(0)
		l.Output = n.Outputs[0]
		if l.Bias == nil {
			r.biasAdd(l)
		}
		l.SharedWeight = len(r.consumers[l.Weight]) > 1 || slices.Contains(r.g.Outputs, l.Weight)
		r.linears = append(r.linears, l)
		r.byNode[n] = l
		r.byOut[n.Outputs[0]] = l
		r.byOut[l.Output] = l
	}
}

// isWeight reports whether v is a 2-D float initializer.
func isWeight(v *graph.Value) bool {
	return v != nil && v.Param && v.Const != nil && v.Const.DType == graph.Float32 && len(v.Const.Shape) == 2
}

func isActivation(v *graph.Value) bool { return v != nil && !v.IsConst() }

// matmulLinear: MatMul(x, W) with W [in,out], or MatMul(x, Transpose(W)) with W [out,in].
func (r *recognizer) matmulLinear(n *graph.Node) *Linear {
	x, w := n.In(0), n.In(1)
	if !isActivation(x) || w == nil {
		return nil
	}
	if isWeight(w) {
		return &Linear{Weight: w, In: w.Const.Shape[0], Out: w.Const.Shape[1]}
	}
	if t := w.Def; t != nil && t.Op == "Transpose" && isWeight(t.In(0)) && len(r.consumers[w]) == 1 {
		if perm, ok := t.Attrs.Ints("perm"); !ok || slices.Equal(perm, []int64{1, 0}) {
			wt := t.In(0)
			return &Linear{Weight: wt, Transposed: true, In: wt.Const.Shape[1], Out: wt.Const.Shape[0]}
		}
	}
	return nil
}

// gemmLinear: Gemm(x, W[, c]) with transA=0 and alpha=1; c is the bias when it
// is a constant of out elements and beta=1.
func (r *recognizer) gemmLinear(n *graph.Node) *Linear {
	x, w := n.In(0), n.In(1)
	if !isActivation(x) || !isWeight(w) || n.Attrs.Int("transA", 0) != 0 || n.Attrs.Float("alpha", 1) != 1 {
		return nil
	}
	l := &Linear{Weight: w, In: w.Const.Shape[0], Out: w.Const.Shape[1]}
	if n.Attrs.Int("transB", 0) != 0 {
		l.Transposed = true
		l.In, l.Out = l.Out, l.In
	}
	// A Gemm adding something other than a bias is still linear in x; it keeps
	// no Bias, and no separate bias Add is looked for after it.
	if c := n.In(2); c != nil && c.IsConst() && c.Const.DType == graph.Float32 && c.Const.Numel() == l.Out && n.Attrs.Float("beta", 1) == 1 {
		l.Bias = c
	}
	return l
}

// biasAdd takes a following Add of a 1-D constant of out elements as the bias.
func (r *recognizer) biasAdd(l *Linear) {
	if l.Node.Op == "Gemm" && l.Node.In(2) != nil {
		return
	}
	y := l.Node.Outputs[0]
	cs := r.consumers[y]
	if len(cs) != 1 || cs[0].Op != "Add" || slices.Contains(r.g.Outputs, y) {
		return
	}
	add := cs[0]
	b := add.In(1)
	if add.In(1) == y {
		b = add.In(0)
	}
	if b == y || !b.IsConst() || b.Const.DType != graph.Float32 || len(b.Const.Shape) != 1 || b.Const.Shape[0] != l.Out {
		return
	}
	l.Bias, l.BiasNode, l.Output = b, add, add.Outputs[0]
}

// ---------------------------------------------------------------------------
// Attention and blocks

// dataInputs are the inputs whose values (not only shapes) flow into a node's
// output: a Reshape's data flows, its target shape does not.
func dataInputs(n *graph.Node) []*graph.Value {
	var ins []*graph.Value
	switch n.Op {
	case "Shape", "Size", "ConstantOfShape", "Range":
		return nil
	case "Reshape", "Expand", "Slice", "Squeeze", "Unsqueeze", "Tile", "Split", "Pad", "Gather",
		"ReduceMean", "ReduceSum", "ReduceMax":
		ins = n.Inputs[:1]
	case "Where":
		ins = n.Inputs[1:]
	default:
		ins = n.Inputs
	}
	var out []*graph.Value
	for _, v := range ins {
		if isActivation(v) {
			out = append(out, v)
		}
	}
	return out
}

func isDataInput(n *graph.Node, v *graph.Value) bool { return slices.Contains(dataInputs(n), v) }

// barrier ops end every walk: other products, normalizations of scores, shape reads.
func barrier(op string) bool {
	switch op {
	case "MatMul", "Gemm", "Conv", "Softmax", "LogSoftmax", "Shape", "Size":
		return true
	}
	return false
}

// layoutOp moves or regroups elements without computing with them.
func layoutOp(op string) bool {
	switch op {
	case "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Identity", "Cast", "Split", "Slice", "Gather":
		return true
	}
	return false
}

// actMatMul reports whether n multiplies two activations.
func actMatMul(n *graph.Node) bool {
	return n != nil && n.Op == "MatMul" && isActivation(n.In(0)) && isActivation(n.In(1))
}

// maxScoreHops bounds the ops between a score product and its Softmax (scaling,
// masks, biases, reshapes).
const maxScoreHops = 12

// scoreProduct finds the activation MatMul that a Softmax's input comes from.
func (r *recognizer) scoreProduct(sm *graph.Node) *graph.Node {
	seen := map[*graph.Value]bool{}
	queue := []*graph.Value{sm.In(0)}
	for hops := 0; len(queue) > 0 && hops < maxScoreHops; hops++ {
		var next []*graph.Value
		for _, v := range queue {
			d := v.Def
			if d == nil || seen[v] {
				continue
			}
			seen[v] = true
			if actMatMul(d) {
				return d
			}
			if barrier(d.Op) {
				continue
			}
			next = append(next, dataInputs(d)...)
		}
		queue = next
	}
	return nil
}

// valueProduct finds the activation MatMul that reads a Softmax's output as its left operand.
func (r *recognizer) valueProduct(sm *graph.Node) *graph.Node {
	seen := map[*graph.Value]bool{}
	queue := []*graph.Value{sm.Outputs[0]}
	for hops := 0; len(queue) > 0 && hops < maxScoreHops; hops++ {
		var next []*graph.Value
		for _, v := range queue {
			if seen[v] {
				continue
			}
			seen[v] = true
			for _, c := range r.consumers[v] {
				if actMatMul(c) && c.In(0) == v {
					return c
				}
				if barrier(c.Op) || !isDataInput(c, v) {
					continue
				}
				next = append(next, c.Outputs...)
			}
		}
		queue = next
	}
	return nil
}

// linearsBefore walks back from v over data inputs and returns the linears whose
// outputs it reaches without crossing another linear, in graph order.
func (r *recognizer) linearsBefore(v *graph.Value) []*Linear {
	seen := map[*graph.Value]bool{}
	found := map[*Linear]bool{}
	stack := []*graph.Value{v}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if v == nil || seen[v] {
			continue
		}
		seen[v] = true
		if l := r.byOut[v]; l != nil {
			found[l] = true
			continue
		}
		d := v.Def
		if d == nil || barrier(d.Op) {
			continue
		}
		stack = append(stack, dataInputs(d)...)
	}
	return r.sorted(found)
}

// linearsAfterLayout walks forward from v through layout ops and returns the
// linears that read the result as their input.
func (r *recognizer) linearsAfterLayout(v *graph.Value) []*Linear {
	seen := map[*graph.Value]bool{}
	found := map[*Linear]bool{}
	stack := []*graph.Value{v}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[v] {
			continue
		}
		seen[v] = true
		for _, c := range r.consumers[v] {
			if l := r.byNode[c]; l != nil && l.Input == v {
				found[l] = true
				continue
			}
			if layoutOp(c.Op) && isDataInput(c, v) {
				stack = append(stack, c.Outputs...)
			}
		}
	}
	return r.sorted(found)
}

// isHead reports whether l's output reaches a graph output without crossing
// another linear and without being added back to a value that l's input was
// computed from (a residual connection: then l ends a block, like fc2 in a
// model without a classifier).
func (r *recognizer) isHead(l *Linear) bool {
	outs := map[*graph.Value]bool{}
	for _, o := range r.g.Outputs {
		outs[o] = true
	}
	var ancestors map[*graph.Value]bool
	reached := false
	seen := map[*graph.Value]bool{}
	stack := []*graph.Value{l.Output}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[v] {
			continue
		}
		seen[v] = true
		reached = reached || outs[v]
		for _, c := range r.consumers[v] {
			if r.byNode[c] != nil || !isDataInput(c, v) {
				continue
			}
			if c.Op == "Add" || c.Op == "Sub" {
				other := c.In(0)
				if other == v {
					other = c.In(1)
				}
				if isActivation(other) {
					if ancestors == nil {
						ancestors = r.ancestors(l.Input)
					}
					if ancestors[other] {
						return false
					}
				}
			}
			stack = append(stack, c.Outputs...)
		}
	}
	return reached
}

// ancestors returns v and every activation its data was computed from.
func (r *recognizer) ancestors(v *graph.Value) map[*graph.Value]bool {
	seen := map[*graph.Value]bool{}
	stack := []*graph.Value{v}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[v] {
			continue
		}
		seen[v] = true
		if v.Def != nil {
			stack = append(stack, dataInputs(v.Def)...)
		}
	}
	return seen
}

func (r *recognizer) sorted(set map[*Linear]bool) []*Linear {
	out := make([]*Linear, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *Linear) int { return r.index[a.Node] - r.index[b.Node] })
	return out
}

func (r *recognizer) findBlocks() {
	taken := map[*graph.Node]bool{}
	for _, n := range r.g.Nodes {
		if n.Op != "Softmax" {
			continue
		}
		qk, av := r.scoreProduct(n), r.valueProduct(n)
		if qk == nil || av == nil || qk == av || taken[qk] || taken[av] {
			continue
		}
		taken[qk], taken[av] = true, true
		b := &Block{Index: len(r.blocks), QK: qk, Softmax: n, AV: av}
		r.blocks = append(r.blocks, b)
		const q, k, v = 1, 2, 4
		sides := map[*Linear]int{}
		var order []*Linear
		for _, s := range []struct {
			from *graph.Value
			bit  int
		}{{qk.In(0), q}, {qk.In(1), k}, {av.In(1), v}} {
			for _, l := range r.linearsBefore(s.from) {
				if l.Block >= 0 {
					continue // already an input of an earlier attention
				}
				if sides[l] == 0 {
					order = append(order, l)
				}
				sides[l] |= s.bit
			}
		}
		for _, l := range order {
			var kind strings.Builder
			for _, s := range []struct {
				bit  int
				name string
			}{{q, "q"}, {k, "k"}, {v, "v"}} {
				if sides[l]&s.bit != 0 {
					kind.WriteString(s.name)
				}
			}
			l.Kind, l.Block = kind.String(), b.Index
		}
		for _, l := range r.linearsAfterLayout(av.Outputs[0]) {
			if l.Block < 0 {
				l.Kind, l.Block = KindProj, b.Index
			}
		}
	}
}

// classifyRest assigns the MLP layers, the head and everything else.
func (r *recognizer) classifyRest() {
	// firstIn[i]: graph position of block i's first attention input (or its QK).
	firstIn := make([]int, len(r.blocks))
	attnEnd := make([]int, len(r.blocks))
	for i, b := range r.blocks {
		firstIn[i] = r.index[b.QK]
		attnEnd[i] = r.index[b.AV]
		for _, l := range r.linears {
			if l.Block == i {
				firstIn[i] = min(firstIn[i], r.index[l.Node])
				attnEnd[i] = max(attnEnd[i], r.index[l.Node])
			}
		}
	}
	mlp := make([][]*Linear, len(r.blocks))
	var tail []*Linear // unclassified linears after the last block's attention (all, without blocks)
	for _, l := range r.linears {
		if l.Block >= 0 {
			continue
		}
		at := r.index[l.Node]
		if len(r.blocks) == 0 {
			tail = append(tail, l)
		}
		for i := range r.blocks {
			if at <= attnEnd[i] || (i+1 < len(r.blocks) && at >= firstIn[i+1]) {
				continue
			}
			if i+1 < len(r.blocks) {
				mlp[i] = append(mlp[i], l)
			} else {
				tail = append(tail, l)
			}
		}
	}
	var rest []*Linear
	for _, l := range tail {
		if r.isHead(l) {
			l.Kind = KindHead
		} else {
			rest = append(rest, l)
		}
	}
	if last := len(r.blocks) - 1; last >= 0 {
		// The last block's MLP has as many layers as the one before; what
		// follows it (a pre-logits layer) stays outside the blocks.
		n := len(rest)
		if last > 0 {
			n = min(n, len(mlp[last-1]))
		}
		mlp[last] = rest[:n]
	}
	for i, ls := range mlp {
		for j, l := range ls {
			l.Kind, l.Block = fmt.Sprintf("fc%d", j+1), i
		}
	}
	for _, l := range r.linears {
		if l.Kind == "" {
			l.Kind = KindLinear
		}
	}
	for _, b := range r.blocks {
		for _, l := range r.linears {
			if l.Block == b.Index {
				b.Linears = append(b.Linears, l)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Names

// name gives every layer and block a name, recovered from the file when the
// file says it unambiguously.
func (r *recognizer) name() {
	uses := func(v *graph.Value) int {
		if v == nil {
			return 0
		}
		n := len(r.consumers[v])
		if slices.Contains(r.g.Outputs, v) {
			n++
		}
		return n
	}
	scopes := map[string]int{}
	for _, l := range r.linears {
		if s := scopeName(l.Node.Name); s != "" {
			scopes[s]++
		}
	}
	recovered := make([]string, len(r.linears))
	for i, l := range r.linears {
		switch {
		case uses(l.Weight) == 1 && stripSuffix(l.Weight.Name, "weight") != "":
			// (a) the weight's own name
			recovered[i] = stripSuffix(l.Weight.Name, "weight")
		case scopes[scopeName(l.Node.Name)] == 1:
			// (b) the exporter's module scope, when no other linear shares it
			recovered[i] = scopeName(l.Node.Name)
		case l.Bias != nil && l.Bias.Param && uses(l.Bias) == 1 && stripSuffix(l.Bias.Name, "bias") != "":
			// (c) the bias's own name
			recovered[i] = stripSuffix(l.Bias.Name, "bias")
		}
	}
	count := map[string]int{}
	for _, n := range recovered {
		count[n]++
	}
	heads := 0
	others := 0
	for i, l := range r.linears {
		if n := recovered[i]; n != "" && count[n] == 1 {
			l.Name = n
			continue
		}
		l.Structural = true
		switch {
		case l.Kind == KindHead:
			l.Name = "head"
			if heads > 0 {
				l.Name = fmt.Sprintf("head_%d", heads)
			}
			heads++
		case l.Block < 0:
			l.Name = fmt.Sprintf("linear_%d", others)
			others++
		case strings.HasPrefix(l.Kind, "fc"):
			l.Name = fmt.Sprintf("blocks.%d.mlp.%s", l.Block, l.Kind)
		default:
			l.Name = fmt.Sprintf("blocks.%d.attn.%s", l.Block, l.Kind)
		}
	}
	// structural names may meet recovered ones: keep every name unique
	taken := map[string]bool{}
	for _, l := range r.linears {
		if !l.Structural {
			taken[l.Name] = true
		}
	}
	for _, l := range r.linears {
		if !l.Structural {
			continue
		}
		base := l.Name
		for i := 2; taken[l.Name]; i++ {
			l.Name = fmt.Sprintf("%s_%d", base, i)
		}
		taken[l.Name] = true
	}
	r.nameBlocks()
}

// nameBlocks names each block by the common prefix of its layers' recovered
// names (and of its Softmax's scope), when they cover both the attention and
// the MLP and the prefixes of all blocks differ; otherwise "blocks.N".
func (r *recognizer) nameBlocks() {
	names := make([]string, len(r.blocks))
	seen := map[string]int{}
	for i, b := range r.blocks {
		var prefix []string
		attn, mlp := false, false
		for _, l := range b.Linears {
			if l.Structural {
				continue
			}
			if strings.HasPrefix(l.Kind, "fc") {
				mlp = true
			} else {
				attn = true
			}
			parts := strings.Split(l.Name, ".")
			if prefix == nil {
				prefix = parts
				continue
			}
			n := 0
			for n < len(prefix) && n < len(parts) && prefix[n] == parts[n] {
				n++
			}
			prefix = prefix[:n]
		}
		// the attention's own scope speaks for its side when its layers are unnamed
		if s := scopeName(b.Softmax.Name); s != "" && prefix != nil {
			parts := strings.Split(s, ".")
			n := 0
			for n < len(prefix) && n < len(parts) && prefix[n] == parts[n] {
				n++
			}
			prefix, attn = prefix[:n], true
		}
		if attn && mlp && len(prefix) > 0 {
			names[i] = strings.Join(prefix, ".")
			seen[names[i]]++
		}
	}
	for i, b := range r.blocks {
		if names[i] != "" && seen[names[i]] == 1 {
			b.Name = names[i]
		} else {
			b.Name, b.Structural = fmt.Sprintf("blocks.%d", i), true
		}
	}
}

// stripSuffix turns "blocks.0.attn.qkv.weight" into "blocks.0.attn.qkv" and
// "self_attn.in_proj_weight" into "self_attn.in_proj"; "" when name does not
// end in .suffix or _suffix.
func stripSuffix(name, suffix string) string {
	for _, sep := range []string{".", "_"} {
		if s, ok := strings.CutSuffix(name, sep+suffix); ok && validName(s) {
			return s
		}
	}
	return ""
}

// validName accepts dotted module paths: no empty part, no spaces, no "::".
func validName(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\n/:") {
		return false
	}
	for _, p := range strings.Split(s, ".") {
		if p == "" {
			return false
		}
	}
	return true
}

// scopeName turns a TorchScript node scope into a module path:
// "/blocks/blocks.3/mlp/fc1/MatMul" -> "blocks.3.mlp.fc1". Each scope level
// holds the module's unqualified name, which repeats its container's name
// before an index ("blocks" then "blocks.3"); the repetition is folded. The
// last level is the node's own name. Returns "" for names that are not scopes.
func scopeName(node string) string {
	rest, ok := strings.CutPrefix(node, "/")
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return ""
	}
	var path []string
	for _, p := range parts[:len(parts)-1] {
		if p == "" {
			return ""
		}
		if n := len(path); n > 0 && strings.HasPrefix(p, path[n-1]+".") {
			path[n-1] = p
			continue
		}
		path = append(path, p)
	}
	s := strings.Join(path, ".")
	if !validName(s) {
		return ""
	}
	return s
}
