package compile

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// Program is a compiled graph: every value has a buffer of fixed shape, and Run
// executes one kernel per node in order.
type Program struct {
	// Graph is the lowered graph (specialized, folded, with gradient nodes).
	Graph   *graph.Graph
	Inputs  []*graph.Value
	Outputs []*graph.Value
	steps   []step
	bufs    map[*graph.Value]*graph.Tensor
	vars    map[*graph.Value]*graph.Value
	grads   map[*graph.Value]*graph.Value
	loss    *graph.Value
	wrt     map[*graph.Value]*graph.Value // original Wrt value -> compiled value
	gradOf  map[*graph.Value]*graph.Value
	// split divides steps into the forward (not reading the seed) and the
	// backward, for Forward and Backward.
	split int
	seed  *graph.Value
}

type step struct {
	node    *graph.Node
	k       Kernel
	in, out []*graph.Tensor
}

func newProgram(c *compilation) (*Program, error) {
	p := &Program{Graph: c.g, Inputs: c.g.Inputs, Outputs: c.g.Outputs,
		bufs: map[*graph.Value]*graph.Tensor{}, vars: c.vars, grads: c.grad, loss: c.loss, gradOf: c.gradOf,
		wrt: map[*graph.Value]*graph.Value{}}
	if c.opts.Grad != nil {
		for _, w := range c.opts.Grad.Wrt {
			p.wrt[w] = c.vmap[w]
		}
	}
	isVar := map[*graph.Value]bool{}
	for _, v := range c.vars {
		isVar[v] = true
		// variables own a private copy, updated in place by training
		p.bufs[v] = v.Const.Clone()
	}
	buf := func(v *graph.Value) *graph.Tensor {
		if v == nil {
			return nil
		}
		if t, ok := p.bufs[v]; ok {
			return t
		}
		var t *graph.Tensor
		if v.IsConst() {
			t = v.Const
		} else {
			t = graph.NewTensor(v.DType, v.StaticShape())
		}
		p.bufs[v] = t
		return t
	}
	for _, in := range c.g.Inputs {
		buf(in)
	}
	for _, n := range c.g.Nodes {
		impl := impls[n.Op]
		if impl.kernel == nil {
			return nil, nodeError(n, "has no kernel")
		}
		k, err := impl.kernel(n)
		if err != nil {
			return nil, err
		}
		s := step{node: n, k: k}
		for _, in := range n.Inputs {
			s.in = append(s.in, buf(in))
		}
		for _, o := range n.Outputs {
			s.out = append(s.out, buf(o))
		}
		p.steps = append(p.steps, s)
	}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		buf(o)
	}
	p.split = len(p.steps)
	if c.seed != nil {
		p.seed = c.seed
		if err := p.splitAtSeed(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// splitAtSeed orders the steps so that none before the split reads the seed
// (stable: the relative order of the steps is kept on each side).
func (p *Program) splitAtSeed() error {
	tainted := map[*graph.Value]bool{p.seed: true}
	var fwd, bwd []step
	for _, s := range p.steps {
		t := false
		for _, in := range s.node.Inputs {
			if tainted[in] {
				t = true
			}
		}
		if t {
			for _, o := range s.node.Outputs {
				tainted[o] = true
			}
			bwd = append(bwd, s)
		} else {
			fwd = append(fwd, s)
		}
	}
	for _, o := range p.Outputs {
		if tainted[o] {
			return fmt.Errorf("output %s depends on the seed", o.Name)
		}
	}
	p.steps = append(fwd, bwd...)
	p.split = len(fwd)
	return nil
}

// Run copies the inputs in (in graph input order), executes, and returns the
// output buffers. They belong to the Program and are overwritten by the next Run.
func (p *Program) Run(inputs ...*graph.Tensor) (outs []*graph.Tensor, err error) {
	if len(inputs) != len(p.Inputs) {
		return nil, fmt.Errorf("program takes %d inputs, got %d", len(p.Inputs), len(inputs))
	}
	for i, in := range p.Inputs {
		if err := p.setInput(in, inputs[i]); err != nil {
			return nil, err
		}
	}
	if err := p.runSteps(0, len(p.steps)); err != nil {
		return nil, err
	}
	for _, o := range p.Outputs {
		outs = append(outs, p.bufs[o])
	}
	return outs, nil
}

func (p *Program) setInput(in *graph.Value, t *graph.Tensor) error {
	want := in.StaticShape()
	if t == nil || t.DType != in.DType || !sameShape(t.Shape, want) {
		if t == nil {
			return fmt.Errorf("input %s: missing", in.Name)
		}
		return fmt.Errorf("input %s: got %s%v, want %s%v", in.Name, t.DType, t.Shape, in.DType, want)
	}
	copyData(p.bufs[in], t)
	return nil
}

func (p *Program) runSteps(from, to int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("run: %v", r)
		}
	}()
	for i := from; i < to; i++ {
		s := &p.steps[i]
		s.k(s.in, s.out)
	}
	return nil
}

// Forward runs the steps that do not need the seed of a vector-Jacobian
// program; inputs are the graph inputs except the seed (nil may stand for it).
func (p *Program) Forward(inputs ...*graph.Tensor) ([]*graph.Tensor, error) {
	var ins []*graph.Value
	for _, in := range p.Inputs {
		if in != p.seed {
			ins = append(ins, in)
		}
	}
	if len(inputs) != len(ins) {
		return nil, fmt.Errorf("forward takes %d inputs, got %d", len(ins), len(inputs))
	}
	for i, in := range ins {
		if err := p.setInput(in, inputs[i]); err != nil {
			return nil, err
		}
	}
	if err := p.runSteps(0, p.split); err != nil {
		return nil, err
	}
	var outs []*graph.Tensor
	for _, o := range p.Outputs {
		outs = append(outs, p.bufs[o])
	}
	return outs, nil
}

// Backward runs the rest after Forward with the given seed (the cotangent of
// GradSpec.Loss); gradients are then read with Grad.
func (p *Program) Backward(seed *graph.Tensor) error {
	if p.seed == nil {
		return fmt.Errorf("program has no seed input")
	}
	if err := p.setInput(p.seed, seed); err != nil {
		return err
	}
	return p.runSteps(p.split, len(p.steps))
}

// Var returns the buffer of a variable (by the value given in Options.Vars):
// write into it to change the weight for the next Run.
func (p *Program) Var(v *graph.Value) *graph.Tensor {
	if cv, ok := p.vars[v]; ok {
		return p.bufs[cv]
	}
	return nil
}

// Value returns the buffer of a value of the lowered graph (for tests and debugging).
func (p *Program) Value(v *graph.Value) *graph.Tensor { return p.bufs[v] }

// Grad returns the gradient buffer of a value listed in GradSpec.Wrt (the value
// of the graph given to Compile), filled by the last Run.
func (p *Program) Grad(v *graph.Value) *graph.Tensor {
	for orig, cv := range p.wrt {
		if orig == v {
			return p.bufs[p.grads[cv]]
		}
	}
	return nil
}

// Loss returns the loss buffer of a gradient program.
func (p *Program) Loss() *graph.Tensor {
	if p.loss == nil {
		return nil
	}
	return p.bufs[p.loss]
}

// GradientValues lists the values of the lowered graph that hold a gradient.
func (p *Program) GradientValues() []*graph.Value {
	var out []*graph.Value
	for _, n := range p.Graph.Nodes {
		for _, o := range n.Outputs {
			if _, ok := p.gradOf[o]; ok {
				out = append(out, o)
			}
		}
	}
	return out
}

// GradientOf returns the lowered-graph value that v is the gradient of, or nil.
func (p *Program) GradientOf(v *graph.Value) *graph.Value { return p.gradOf[v] }
