package compile

import (
	"fmt"
	"math"

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
// node on a path from a Wrt value to the loss gets its vector-Jacobian rule from
// vjps, so the backward nodes go through the same later passes as the forward.
// Only nodes between the Wrt values and the loss are differentiated.
func gradPass(c *compilation) error {
	spec := c.opts.Grad
	if spec == nil {
		return nil
	}
	loss, ok := c.vmap[spec.Loss]
	if !ok {
		return fmt.Errorf("grad: loss %s is not a value of the graph", spec.Loss.Name)
	}
	var seed *graph.Value
	if spec.Seed != nil {
		if seed = c.vmap[spec.Seed]; seed == nil || seed.Def != nil || seed.IsConst() {
			return fmt.Errorf("grad: seed %s must be a graph input", spec.Seed.Name)
		}
		if !sameShape(seed.StaticShape(), loss.StaticShape()) || seed.DType != graph.Float32 {
			return fmt.Errorf("grad: seed %s%v does not match %s%v", seed.Name, seed.Shape, loss.Name, loss.Shape)
		}
	} else if loss.DType != graph.Float32 || graph.Numel(loss.StaticShape()) != 1 {
		return fmt.Errorf("grad: loss %s must be a float scalar, got %s%v", loss.Name, loss.DType, loss.Shape)
	}
	var wrt []*graph.Value
	for _, w := range spec.Wrt {
		cw, ok := c.vmap[w]
		if !ok {
			return fmt.Errorf("grad: %s is not a value of the graph", w.Name)
		}
		if cw.IsConst() && !c.isVar[cw] {
			return fmt.Errorf("grad: %s is a constant; list it in Options.Vars to differentiate it", w.Name)
		}
		wrt = append(wrt, cw)
	}
	// depends: values that depend on a Wrt value through float data.
	depends := map[*graph.Value]bool{}
	for _, w := range wrt {
		depends[w] = true
	}
	for _, n := range c.g.Nodes {
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
	b := &builder{g: c.g, gradOf: c.gradOf}
	grads := map[*graph.Value][]*graph.Value{}
	if seed != nil {
		grads[loss] = []*graph.Value{seed}
	} else {
		grads[loss] = []*graph.Value{b.constF(graph.F32(loss.StaticShape(), []float32{1}))}
	}
	c.seed = seed
	fwd := append([]*graph.Node{}, c.g.Nodes...)
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
		rule, ok := vjps[n.Op]
		if !ok {
			return fmt.Errorf("grad: operator %s (node %q) has no gradient rule", n.Op, n.Name)
		}
		gxs, err := rule(b, n, gys, need)
		if err != nil {
			return fmt.Errorf("grad: node %q (%s): %v", n.Name, n.Op, err)
		}
		for j, gx := range gxs {
			if j < len(need) && need[j] && gx != nil {
				grads[n.Inputs[j]] = append(grads[n.Inputs[j]], gx)
			}
		}
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

// builder adds nodes and infers their shapes at once, so rules can read them.
type builder struct {
	g      *graph.Graph
	gradOf map[*graph.Value]*graph.Value
	err    error
	cur    *graph.Value // the forward value whose gradient is being built
}

func (b *builder) op(op string, attrs graph.Attrs, inputs ...*graph.Value) *graph.Value {
	n := b.g.AddNode(op, "grad", inputs, attrs, "grad_"+op)
	if b.err == nil {
		if err := impls[op].infer(n); err != nil {
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
// gradients of its outputs (nil for outputs the loss does not depend on).
type rule func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error)

var vjps map[string]rule

func init() {
	in := func(n *graph.Node, i int) []int { return n.Inputs[i].StaticShape() }
	vjps = map[string]rule{
		// d(a+b) = da + db, broadcast undone
		"Add": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.sumTo(gy[0], in(n, 0)), b.sumTo(gy[0], in(n, 1))}, nil
		},
		// d(a-b) = da - db
		"Sub": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			out := []*graph.Value{b.sumTo(gy[0], in(n, 0)), nil}
			if need[1] {
				out[1] = b.sumTo(b.neg(gy[0]), in(n, 1))
			}
			return out, nil
		},
		// d(ab) = b da + a db
		"Mul": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			out := make([]*graph.Value, 2)
			if need[0] {
				out[0] = b.sumTo(b.mul(gy[0], n.Inputs[1]), in(n, 0))
			}
			if need[1] {
				out[1] = b.sumTo(b.mul(gy[0], n.Inputs[0]), in(n, 1))
			}
			return out, nil
		},
		// d(a/b) = da/b - (a/b) db/b
		"Div": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			out := make([]*graph.Value, 2)
			ga := b.div(gy[0], n.Inputs[1])
			if need[0] {
				out[0] = b.sumTo(ga, in(n, 0))
			}
			if need[1] {
				out[1] = b.sumTo(b.neg(b.mul(ga, n.Outputs[0])), in(n, 1))
			}
			return out, nil
		},
		// d(a^p) = p a^(p-1) da + a^p log(a) dp
		"Pow": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			out := make([]*graph.Value, 2)
			a, p := n.Inputs[0], n.Inputs[1]
			if need[0] {
				pm1 := b.sub(p, b.scalar(1))
				out[0] = b.sumTo(b.mul(gy[0], b.mul(p, b.op("Pow", nil, a, pm1))), in(n, 0))
			}
			if need[1] {
				out[1] = b.sumTo(b.mul(gy[0], b.mul(n.Outputs[0], b.op("Log", nil, a))), in(n, 1))
			}
			return out, nil
		},
		// d sqrt(x) = dx / (2 sqrt(x))
		"Sqrt": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.div(b.mul(gy[0], b.scalar(0.5)), n.Outputs[0])}, nil
		},
		// d erf(x) = 2/sqrt(pi) exp(-x^2) dx
		"Erf": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			x := n.Inputs[0]
			e := b.op("Exp", nil, b.neg(b.mul(x, x)))
			return []*graph.Value{b.mul(gy[0], b.mul(e, b.scalar(float32(2/math.Sqrt(math.Pi)))))}, nil
		},
		// d exp(x) = exp(x) dx
		"Exp": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.mul(gy[0], n.Outputs[0])}, nil
		},
		// d log(x) = dx / x
		"Log": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.div(gy[0], n.Inputs[0])}, nil
		},
		// d tanh(x) = (1 - tanh^2) dx
		"Tanh": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			y := n.Outputs[0]
			return []*graph.Value{b.mul(gy[0], b.sub(b.scalar(1), b.mul(y, y)))}, nil
		},
		// d sigmoid(x) = s (1 - s) dx
		"Sigmoid": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			y := n.Outputs[0]
			return []*graph.Value{b.mul(gy[0], b.mul(y, b.sub(b.scalar(1), y)))}, nil
		},
		// d relu(x) = [x > 0] dx
		"Relu": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			mask := b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, b.op("Greater", nil, n.Inputs[0], b.scalar(0)))
			return []*graph.Value{b.mul(gy[0], mask)}, nil
		},
		"Neg": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.neg(gy[0])}, nil
		},
		// d |x| = sign(x) dx
		"Abs": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.mul(gy[0], b.op("Sign", nil, n.Inputs[0]))}, nil
		},
		// d (1/x) = -dx / x^2
		"Reciprocal": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			y := n.Outputs[0]
			return []*graph.Value{b.neg(b.mul(gy[0], b.mul(y, y)))}, nil
		},
		"Gelu": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.op("GeluGrad", graph.Attrs{"approximate": n.Attrs.Str("approximate", "none")}, n.Inputs[0], gy[0])}, nil
		},
		"Identity": passThrough,
		"Cast": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{gy[0]}, nil // only float->float casts carry gradients
		},
		// clip passes the gradient where lo <= x <= hi
		"Clip": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			x := n.Inputs[0]
			mask := b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, b.op("Equal", nil, x, n.Outputs[0]))
			return []*graph.Value{b.mul(gy[0], mask)}, nil
		},
		// where(c, a, b): the gradient goes to the branch that was taken
		"Where": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			zero := b.scalar(0)
			out := make([]*graph.Value, 3)
			if need[1] {
				out[1] = b.sumTo(b.op("Where", nil, n.Inputs[0], gy[0], zero), in(n, 1))
			}
			if need[2] {
				out[2] = b.sumTo(b.op("Where", nil, n.Inputs[0], zero, gy[0]), in(n, 2))
			}
			return out, nil
		},
		// softmax: dx = y (dy - sum(dy y))
		"Softmax": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.op("SoftmaxGrad", graph.Attrs{"axis": n.Attrs.Int("axis", -1)}, n.Outputs[0], gy[0])}, nil
		},
		// log-softmax: dx = dy - exp(y) sum(dy)
		"LogSoftmax": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			axis := n.Attrs.Int("axis", -1)
			s := b.op("ReduceSum", graph.Attrs{"keepdims": int64(1)}, gy[0], b.g.Const("axis", graph.I64([]int{1}, []int64{axis})))
			return []*graph.Value{b.sub(gy[0], b.mul(b.op("Exp", nil, n.Outputs[0]), s))}, nil
		},
		"LayerNormalization": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			node := b.g.AddNode("LayerNormGrad", "grad", []*graph.Value{n.Inputs[0], n.Inputs[1], gy[0]},
				graph.Attrs{"axis": n.Attrs.Int("axis", -1), "epsilon": n.Attrs.Float("epsilon", 1e-5)},
				"grad_ln_x", "grad_ln_scale", "grad_ln_bias")
			if err := impls["LayerNormGrad"].infer(node); err != nil {
				return nil, err
			}
			out := []*graph.Value{node.Outputs[0], b.reshape(node.Outputs[1], in(n, 1)), nil}
			if len(n.Inputs) > 2 && n.Inputs[2] != nil {
				out[2] = b.reshape(node.Outputs[2], in(n, 2))
			}
			return out, nil
		},
		"ReduceSum":  gradReduce,
		"ReduceMean": gradReduce,
		// max: the gradient goes to the elements equal to the maximum
		"ReduceMax": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			x := n.Inputs[0]
			ymax, g := keepDims(b, n, n.Outputs[0]), keepDims(b, n, gy[0])
			mask := b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, b.op("Equal", nil, x, ymax))
			return []*graph.Value{b.mul(mask, g)}, nil
		},
		"MatMul": gradMatMul,
		"Gemm":   gradGemm,
		"Conv":   gradConv,
		// pure reshapes: the gradient takes the input's shape
		"Reshape":   gradReshape,
		"Flatten":   gradReshape,
		"Squeeze":   gradReshape,
		"Unsqueeze": gradReshape,
		"Transpose": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			p, err := perm(n, len(in(n, 0)))
			if err != nil {
				return nil, err
			}
			inv := make([]int, len(p))
			for i, ax := range p {
				inv[ax] = i
			}
			return []*graph.Value{b.transpose(gy[0], inv)}, nil
		},
		"Concat": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			axis, _ := normAxis(n, n.Attrs.Int("axis", 0), len(in(n, 0)))
			out := make([]*graph.Value, len(n.Inputs))
			off := 0
			for i := range n.Inputs {
				w := in(n, i)[axis]
				if need[i] {
					out[i] = b.op("Slice", nil, gy[0], b.ints(off), b.ints(off+w), b.ints(axis))
				}
				off += w
			}
			return out, nil
		},
		"Split": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			axis, _ := normAxis(n, n.Attrs.Int("axis", 0), len(in(n, 0)))
			parts := make([]*graph.Value, len(n.Outputs))
			for i, o := range n.Outputs {
				parts[i] = gy[i]
				if parts[i] == nil {
					parts[i] = b.constF(graph.NewTensor(graph.Float32, o.StaticShape()))
				}
			}
			return []*graph.Value{b.op("Concat", graph.Attrs{"axis": int64(axis)}, parts...)}, nil
		},
		"Slice":  gradIndexMap,
		"Tile":   gradIndexMap,
		"Expand": gradIndexMap,
		"Gather": func(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
			return []*graph.Value{b.op("GatherGrad", graph.Attrs{"shape": i64s(in(n, 0)), "axis": n.Attrs.Int("axis", 0)}, gy[0], n.Inputs[1])}, nil
		},
		// max/min: the gradient goes to the inputs equal to the result
		"Max": gradMinMax,
		"Min": gradMinMax,
	}
}

func passThrough(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{gy[0]}, nil
}

func gradReshape(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.reshape(gy[0], n.Inputs[0].StaticShape())}, nil
}

// keepDims reshapes a reduced value to the reduction's keepdims shape.
func keepDims(b *builder, n *graph.Node, v *graph.Value) *graph.Value {
	x := n.Inputs[0].StaticShape()
	red, _ := reduceAxes(n)
	shape := make([]int, len(x))
	for i, d := range x {
		shape[i] = d
		if red[i] {
			shape[i] = 1
		}
	}
	return b.reshape(v, shape)
}

// sum/mean: the gradient is broadcast back over the reduced axes (divided by
// their size for the mean).
func gradReduce(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	x := n.Inputs[0].StaticShape()
	g := keepDims(b, n, gy[0])
	if n.Op == "ReduceMean" {
		cnt := graph.Numel(x) / max(graph.Numel(n.Outputs[0].StaticShape()), 1)
		g = b.mul(g, b.scalar(1/float32(cnt)))
	}
	return []*graph.Value{b.op("Expand", nil, g, b.ints(x...))}, nil
}

// matmul: dA = dY B^T, dB = A^T dY, with numpy's 1-D promotion and batch
// broadcasting undone. A 2-D right operand (a linear layer's weight) uses Gemm
// over the flattened rows so that dW is one matrix product.
func gradMatMul(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	A, B := n.Inputs[0], n.Inputs[1]
	as, bs := A.StaticShape(), B.StaticShape()
	pa, pb := as, bs
	if len(as) == 1 {
		pa = []int{1, as[0]}
	}
	if len(bs) == 1 {
		pb = []int{bs[0], 1}
	}
	a, bb := b.reshape(A, pa), b.reshape(B, pb)
	p, err := planMatMul(n, pa, pb)
	if err != nil {
		return nil, err
	}
	g := b.reshape(gy[0], p.out)
	out := make([]*graph.Value, 2)
	k, nn := p.k, p.n
	if len(pb) == 2 {
		rows := graph.Numel(pa) / k
		g2 := b.reshape(g, []int{rows, nn})
		if need[0] {
			out[0] = b.reshape(b.op("Gemm", graph.Attrs{"transB": int64(1)}, g2, bb), as)
		}
		if need[1] {
			out[1] = b.reshape(b.op("Gemm", graph.Attrs{"transA": int64(1)}, b.reshape(a, []int{rows, k}), g2), bs)
		}
		return out, nil
	}
	if need[0] {
		out[0] = b.reshape(b.sumTo(b.op("MatMul", nil, g, b.swapLast(bb)), pa), as)
	}
	if need[1] {
		out[1] = b.reshape(b.sumTo(b.op("MatMul", nil, b.swapLast(a), g), pb), bs)
	}
	return out, nil
}

// gemm: Y = alpha op(A) op(B) + beta C.
func gradGemm(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	ta, tb := n.Attrs.Int("transA", 0), n.Attrs.Int("transB", 0)
	alpha, beta := n.Attrs.Float("alpha", 1), n.Attrs.Float("beta", 1)
	A, B, g := n.Inputs[0], n.Inputs[1], gy[0]
	out := make([]*graph.Value, 3)
	if need[0] {
		if ta == 0 { // dA = alpha dY op(B)^T
			out[0] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transB": 1 - tb}, g, B)
		} else { // dA = alpha op(B) dY^T
			out[0] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transA": tb, "transB": int64(1)}, B, g)
		}
	}
	if need[1] {
		if tb == 0 { // dB = alpha op(A)^T dY
			out[1] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transA": 1 - ta}, A, g)
		} else { // dB = alpha dY^T op(A)
			out[1] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transA": int64(1), "transB": ta}, g, A)
		}
	}
	if len(need) > 2 && need[2] {
		gc := b.sumTo(g, n.Inputs[2].StaticShape())
		if beta != 1 {
			gc = b.mul(gc, b.scalar(beta))
		}
		out[2] = gc
	}
	return out, nil
}

func convAttrs(n *graph.Node, shape []int) graph.Attrs {
	a := n.Attrs.Clone()
	a["shape"] = i64s(shape)
	return a
}

// conv: dX by the transposed convolution, dW by correlating X with dY, db by
// summing dY over batch and space.
func gradConv(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, 3)
	if need[0] {
		out[0] = b.op("ConvGradInput", convAttrs(n, n.Inputs[0].StaticShape()), n.Inputs[1], gy[0])
	}
	if need[1] {
		out[1] = b.op("ConvGradW", convAttrs(n, n.Inputs[1].StaticShape()), n.Inputs[0], gy[0])
	}
	if len(need) > 2 && need[2] {
		ys := gy[0].StaticShape()
		axes := []int{0}
		for i := 2; i < len(ys); i++ {
			axes = append(axes, i)
		}
		out[2] = b.op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, gy[0], b.ints(axes...))
	}
	return out, nil
}

// data movement: an expand's gradient sums the broadcast away; a slice's
// scatters into zeros through its strided view; a tile's scatter-adds
// through its element map.
func gradIndexMap(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	shape := i64s(n.Inputs[0].StaticShape())
	switch n.Op {
	case "Expand":
		return []*graph.Value{b.sumTo(gy[0], n.Inputs[0].StaticShape())}, nil
	case "Slice":
		v, _, err := viewOf(n)
		if err != nil {
			return nil, err
		}
		return []*graph.Value{b.op("IndexGrad", graph.Attrs{"shape": shape,
			"vshape": i64s(v.shape), "vstrides": i64s(v.strides), "voffset": int64(v.offset)}, gy[0])}, nil
	}
	m, err := IndexMap(n)
	if err != nil {
		return nil, err
	}
	return []*graph.Value{b.op("IndexGrad", graph.Attrs{"map": m, "shape": shape}, gy[0])}, nil
}

func gradMinMax(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, len(n.Inputs))
	for i, x := range n.Inputs {
		if need[i] {
			mask := b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, b.op("Equal", nil, x, n.Outputs[0]))
			out[i] = b.sumTo(b.mul(gy[0], mask), x.StaticShape())
		}
	}
	return out, nil
}
