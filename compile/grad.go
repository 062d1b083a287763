package compile

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// GradSpec asks for the gradient of a float value with respect to some values
// of the graph given to Compile: graph inputs, variables (Options.Vars), or
// any other float value. Without Seed, Loss must be a scalar and its gradient
// is taken. With Seed, a graph input of Loss's shape that the forward does not
// read, the gradient of sum(Loss * Seed) is taken: a vector-Jacobian product,
// so losses can be computed outside the graph from Loss (e.g. logits) between
// Program.Forward and Program.Backward.
type GradSpec struct {
	Loss *graph.Value
	Seed *graph.Value
	Wrt  []*graph.Value
}

// gradPass is reverse-mode differentiation written as graph ops: each forward
// node on a path from a Wrt value to the loss gets the vector-Jacobian rule of
// its operator's definition (opDef.grad), so the backward nodes go through the
// same later passes as the forward. Only nodes between the Wrt values and the
// loss are differentiated.
func gradPass(c *compilation) error {
	spec := c.opts.Grad
	if spec == nil {
		return nil
	}
	loss, seed, err := gradTarget(c, spec)
	if err != nil {
		return err
	}
	wrt, err := gradWrt(c, spec)
	if err != nil {
		return err
	}
	depends := floatDependents(c.g.Nodes, wrt)
	b := &builder{g: c.g, gradOf: c.gradOf}
	grads := map[*graph.Value][]*graph.Value{}
	if seed != nil {
		grads[loss] = []*graph.Value{seed}
	} else {
		grads[loss] = []*graph.Value{b.constF(graph.F32(loss.StaticShape(), []float32{1}))}
	}
	c.seed = seed
	if err := b.backprop(append([]*graph.Node{}, c.g.Nodes...), depends, grads); err != nil {
		return err
	}
	c.grad = map[*graph.Value]*graph.Value{}
	for _, w := range wrt {
		g := b.sum(grads[w], w)
		if g == nil {
			g = b.constF(graph.NewTensor(graph.Float32, w.StaticShape())) // the loss does not depend on w
		}
		c.grad[w] = g
		c.extra = append(c.extra, g)
	}
	c.loss = loss
	return b.err
}

// gradTarget resolves the loss and, for a vector-Jacobian product, the seed
// in the compiled graph, and checks that they fit together.
func gradTarget(c *compilation, spec *GradSpec) (loss, seed *graph.Value, err error) {
	loss, ok := c.vmap[spec.Loss]
	if !ok {
		return nil, nil, fmt.Errorf("grad: loss %s is not a value of the graph", spec.Loss.Name)
	}
	if spec.Seed != nil {
		if seed = c.vmap[spec.Seed]; seed == nil || seed.Def != nil || seed.IsConst() {
			return nil, nil, fmt.Errorf("grad: seed %s must be a graph input", spec.Seed.Name)
		}
		if !sameShape(seed.StaticShape(), loss.StaticShape()) || seed.DType != graph.Float32 {
			return nil, nil, fmt.Errorf("grad: seed %s%v does not match %s%v", seed.Name, seed.Shape, loss.Name, loss.Shape)
		}
	} else if loss.DType != graph.Float32 || graph.Numel(loss.StaticShape()) != 1 {
		return nil, nil, fmt.Errorf("grad: loss %s must be a float scalar, got %s%v", loss.Name, loss.DType, loss.Shape)
	}
	return loss, seed, nil
}

// gradWrt resolves the values to differentiate in the compiled graph.
func gradWrt(c *compilation, spec *GradSpec) ([]*graph.Value, error) {
	var wrt []*graph.Value
	for _, w := range spec.Wrt {
		cw, ok := c.vmap[w]
		if !ok {
			return nil, fmt.Errorf("grad: %s is not a value of the graph", w.Name)
		}
		if cw.IsConst() && !c.isVar[cw] {
			return nil, fmt.Errorf("grad: %s is a constant; list it in Options.Vars to differentiate it", w.Name)
		}
		wrt = append(wrt, cw)
	}
	return wrt, nil
}

// floatDependents marks the values that depend on a wrt value through
// float data.
func floatDependents(nodes []*graph.Node, wrt []*graph.Value) map[*graph.Value]bool {
	depends := map[*graph.Value]bool{}
	for _, w := range wrt {
		depends[w] = true
	}
	for _, n := range nodes {
		for _, in := range n.Inputs {
			if in != nil && depends[in] {
				for _, o := range n.Outputs {
					if o.DType == graph.Float32 {
						depends[o] = true
					}
				}
				break
			}
		}
	}
	return depends
}

// backprop visits the forward nodes last to first: a node whose outputs
// received gradients and some of whose float inputs depend on a wrt value
// adds its rule's nodes, and the rule's input gradients join grads.
func (b *builder) backprop(fwd []*graph.Node, depends map[*graph.Value]bool, grads map[*graph.Value][]*graph.Value) error {
	for i := len(fwd) - 1; i >= 0; i-- {
		n := fwd[i]
		var gys []*graph.Value
		any := false
		for _, o := range n.Outputs {
			g := b.sum(grads[o], o)
			gys = append(gys, g)
			if g != nil {
				any = true
			}
		}
		if !any {
			continue
		}
		need := make([]bool, len(n.Inputs))
		needAny := false
		for j, in := range n.Inputs {
			if in != nil && depends[in] && in.DType == graph.Float32 {
				need[j], needAny = true, true
			}
		}
		if !needAny {
			continue
		}
		d := defs[n.Op]
		if d == nil || d.grad == nil {
			return fmt.Errorf("grad: %s: operator %s has no gradient rule", describeNode(n), n.Op)
		}
		gxs, err := d.grad(b, n, gys, need)
		if err != nil {
			return fmt.Errorf("grad: %w", atNode(n, err))
		}
		for j, gx := range gxs {
			if j < len(need) && need[j] && gx != nil {
				grads[n.Inputs[j]] = append(grads[n.Inputs[j]], gx)
			}
		}
	}
	return nil
}

// builder adds nodes and infers their shapes at once, so rules can read them.
type builder struct {
	g      *graph.Graph
	gradOf map[*graph.Value]*graph.Value
	err    error
}

func (b *builder) op(op string, attrs graph.Attrs, inputs ...*graph.Value) *graph.Value {
	n := b.g.AddNode(op, "grad", inputs, attrs, "grad_"+op)
	if b.err == nil {
		if err := defs[op].infer(n); err != nil {
			b.err = err
		}
	}
	if n.Outputs[0].Shape == nil {
		n.Outputs[0].Shape = graph.Shape{}
	}
	return n.Outputs[0]
}

func (b *builder) constF(t *graph.Tensor) *graph.Value { return b.g.Const("grad_const", t) }
func (b *builder) scalar(v float32) *graph.Value       { return b.constF(graph.ScalarF32(v)) }
func (b *builder) ints(v ...int) *graph.Value {
	return b.g.Const("grad_ints", graph.I64([]int{len(v)}, i64s(v)))
}

// sum adds the gradient contributions of one value.
func (b *builder) sum(parts []*graph.Value, of *graph.Value) *graph.Value {
	if len(parts) == 0 {
		return nil
	}
	acc := parts[0]
	for _, p := range parts[1:] {
		acc = b.op("Add", nil, acc, p)
	}
	b.gradOf[acc] = of
	return acc
}

// sumTo reduces a broadcast gradient back to shape (numpy broadcasting undone).
func (b *builder) sumTo(g *graph.Value, shape []int) *graph.Value {
	gs := g.StaticShape()
	if sameShape(gs, shape) {
		return g
	}
	off := len(gs) - len(shape)
	var axes []int
	for i := range gs {
		if i < off || (shape[i-off] == 1 && gs[i] != 1) {
			axes = append(axes, i)
		}
	}
	r := g
	if len(axes) > 0 {
		r = b.op("ReduceSum", graph.Attrs{"keepdims": int64(1)}, g, b.ints(axes...))
	}
	return b.reshape(r, shape)
}

func (b *builder) reshape(x *graph.Value, shape []int) *graph.Value {
	if sameShape(x.StaticShape(), shape) {
		return x
	}
	return b.op("Reshape", graph.Attrs{"allowzero": int64(1)}, x, b.ints(shape...))
}

func (b *builder) transpose(x *graph.Value, perm []int) *graph.Value {
	return b.op("Transpose", graph.Attrs{"perm": i64s(perm)}, x)
}

// swapLast transposes the last two dims.
func (b *builder) swapLast(x *graph.Value) *graph.Value {
	r := len(x.StaticShape())
	p := make([]int, r)
	for i := range p {
		p[i] = i
	}
	p[r-1], p[r-2] = p[r-2], p[r-1]
	return b.transpose(x, p)
}

func (b *builder) mul(x, y *graph.Value) *graph.Value { return b.op("Mul", nil, x, y) }
func (b *builder) div(x, y *graph.Value) *graph.Value { return b.op("Div", nil, x, y) }
func (b *builder) sub(x, y *graph.Value) *graph.Value { return b.op("Sub", nil, x, y) }
func (b *builder) neg(x *graph.Value) *graph.Value    { return b.op("Neg", nil, x) }

// rule returns one gradient per input of n (nil where not needed), given the
// gradients of its outputs (nil for outputs the loss does not depend on). It
// adds the nodes computing them through b. Each operator's rule is part of
// its definition (opDef.grad), next to its kernel.
type rule func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error)

// inShape is input i's static shape.
func inShape(n *graph.Node, i int) []int { return n.Inputs[i].StaticShape() }
