package layers

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hyperat/hyperat/graph"
)

// This file recognizes the tunable linear layers of a transformer from the
// graph's structure alone: no rule knows a model family or a parameter name.
//
//   linear     a product Match finds (MatMul(x, W), MatMul(x, Transpose(W)) or
//              Gemm(x, W[, c]), W a 2-D float initializer, and its bias) that
//              reads x plainly, with alpha 1, and owns its Transpose of W; x must be
//              computed from the model's input (a product of parameters alone, such
//              as Swin V2's position-bias MLP, makes weights and is no layer).
//   attention  Softmax between two activation-by-activation MatMuls:
//              QK = MatMul(q, k^T) -> ... -> Softmax -> ... -> AV = MatMul(·, v).
//   q, k, v    linears whose outputs reach QK's left input (q), QK's right input (k)
//              or AV's right input (v) without crossing another linear; one linear
//              reaching all three is the packed qkv.
//   proj       a linear reading the AV product through layout ops (Transpose, Reshape...).
//   fc1..fcN   the linears between a block's proj and the next block's attention inputs.
//   head       a linear after the last block whose output reaches a graph output
//              without crossing another linear.

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
	// Convs are the convolutions, in graph order: listed, never tuned.
	Convs []*Conv
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

// Recognize finds the transformer blocks and the linear layers of a graph.
func Recognize(g *graph.Graph) (*Report, error) {
	if g == nil {
		return nil, fmt.Errorf("recognize: no graph")
	}
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
	r.fromInput = dependents(g)
	r.findLinears()
	rep.Linears = r.linears
	r.findConvs()
	rep.Convs = r.convs
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
	fromInput map[*graph.Value]bool // values whose data is computed from a graph input
	index     map[*graph.Node]int
	linears   []*Linear                // graph order
	byOut     map[*graph.Value]*Linear // product and output values -> layer
	byNode    map[*graph.Node]*Linear
	blocks    []*Block
	convs     []*Conv // graph order
}

// ---------------------------------------------------------------------------
// Linear layers

// findLinears collects the products Match finds that recognition tunes: x
// read plainly, alpha 1, and a Transpose of W that only this product reads
// (one transposed weight shared by two products would be one weight for two
// layers).
func (r *recognizer) findLinears() {
	for _, n := range r.g.Nodes {
		l := Match(r.g, r.consumers, n)
		if l == nil || l.TransX || l.Alpha != 1 || l.Reader != n && len(r.consumers[l.Reader.Outputs[0]]) != 1 ||
			!r.fromInput[l.Input] {
			continue
		}
		r.linears = append(r.linears, l)
		r.byNode[n] = l
		r.byOut[n.Outputs[0]] = l
		r.byOut[l.Output] = l
	}
}

// dependents returns the values whose data flows from a graph input (the
// nodes are in topological order).
func dependents(g *graph.Graph) map[*graph.Value]bool {
	dep := map[*graph.Value]bool{}
	for _, in := range g.Inputs {
		dep[in] = true
	}
	for _, n := range g.Nodes {
		if slices.ContainsFunc(dataInputs(n), func(v *graph.Value) bool { return dep[v] }) {
			for _, o := range n.Outputs {
				dep[o] = true
			}
		}
	}
	return dep
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
	// A block's MLP is a chain: each layer reads the width the one before it
	// writes, the first the block's width (its proj's output). A linear
	// that breaks the chain before the next attention (Swin's patch merging,
	// which reads four concatenated neighbours, 4x the width) is not part of
	// the block and stays untuned.
	width := func(i int) int {
		for _, l := range r.linears {
			if l.Block == i && l.Kind == KindProj {
				return l.Out
			}
		}
		return 0
	}
	mlpEnd := func(ls []*Linear, d int) []*Linear {
		for j, l := range ls {
			if d != 0 && l.In != d {
				return ls[:j]
			}
			d = l.Out
		}
		return ls
	}
	for i := range mlp {
		mlp[i] = mlpEnd(mlp[i], width(i))
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
		mlp[last] = mlpEnd(rest[:n], width(last))
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
