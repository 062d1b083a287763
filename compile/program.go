package compile

import (
	"cmp"
	"fmt"
	"slices"
	"time"

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
	arena []float32
	// shared, when set, is the arena that holds the activations instead;
	// bound lists the buffers in it, gen the arena memory they point at.
	shared *Arena
	bound  []arenaRef
	gen    int
	outs   []*graph.Tensor
	// prof, when not nil, accumulates the time of each step (see Profile).
	prof []time.Duration
	hook func(step int) // see Hook
	cp   *inputCopy
	mem  Memory
	// lent holds, for each borrowed input (Options.Borrowed), its buffer and
	// the views of it, which every run points at the caller's data.
	lent map[*graph.Value][]*graph.Tensor
}

type step struct {
	node    *graph.Node
	k       Kernel
	in, out []*graph.Tensor
}

func newProgram(c *compilation) (*Program, error) {
	p := &Program{Graph: c.g, Inputs: c.g.Inputs, Outputs: c.g.Outputs,
		bufs: map[*graph.Value]*graph.Tensor{}, vars: c.vars, grads: c.grad, loss: c.loss, gradOf: c.gradOf,
		wrt: map[*graph.Value]*graph.Value{}, cp: newInputCopy(), lent: map[*graph.Value][]*graph.Tensor{}}
	for v := range c.borrowed {
		p.lent[v] = nil
	}
	if c.opts.Grad != nil {
		for _, w := range c.opts.Grad.Wrt {
			p.wrt[w] = c.vmap[w]
		}
	}
	for _, v := range c.vars {
		p.bufs[v] = v.Const.Clone() // variables own a private copy, updated in place by training
	}
	plan, splitNode, err := planOf(c)
	if err != nil {
		return nil, err
	}
	if c.seed != nil {
		p.seed = c.seed
	}
	p.mem = measure(c, plan)
	if a := c.opts.Arena; a != nil {
		a.reserve(plan.arenaLen)
		p.shared, p.gen = a, a.gen
		p.arena = a.buf[:plan.arenaLen]
	} else {
		p.arena = make([]float32, plan.arenaLen)
	}
	for _, in := range c.g.Inputs {
		p.buf(plan, in)
	}
	if err := p.bindSteps(c.g.Nodes, plan, splitNode); err != nil {
		return nil, err
	}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		p.buf(plan, o)
	}
	p.outs = make([]*graph.Tensor, len(p.Outputs))
	for i, o := range p.Outputs {
		p.outs[i] = p.bufs[o]
	}
	return p, nil
}

// buf returns v's buffer, making it on first use: a constant's data, a view
// of the buffer v aliases, a slice of the arena, or memory of its own.
func (p *Program) buf(plan *memPlan, v *graph.Value) *graph.Tensor {
	if v == nil {
		return nil
	}
	if t, ok := p.bufs[v]; ok {
		return t
	}
	var t *graph.Tensor
	switch r := plan.root(v); {
	case v.IsConst():
		t = v.Const
	case r != v:
		src := p.buf(plan, r)
		t = &graph.Tensor{DType: src.DType, Shape: v.StaticShape(), F: src.F, I: src.I, B: src.B}
		if o, ok := plan.offset[r]; ok && p.shared != nil {
			p.bound = append(p.bound, arenaRef{t, o, len(src.F)})
		}
		if views, ok := p.lent[r]; ok {
			p.lent[r] = append(views, t)
		}
	default:
		if views, ok := p.lent[v]; ok {
			t = &graph.Tensor{DType: v.DType, Shape: v.StaticShape()} // data bound by each run
			p.lent[v] = append(views, t)
		} else if o, ok := plan.offset[v]; ok {
			n := graph.Numel(v.StaticShape())
			t = &graph.Tensor{DType: graph.Float32, Shape: v.StaticShape(), F: p.arena[o : o+n : o+n]}
			if p.shared != nil {
				p.bound = append(p.bound, arenaRef{t, o, n})
			}
		} else {
			t = graph.NewTensor(v.DType, v.StaticShape())
		}
	}
	p.bufs[v] = t
	return t
}

// bindSteps makes one step per node that computes something (a node whose
// output aliases its input runs none), with its kernel and buffers; the
// steps of nodes from splitNode on are the backward (see Forward).
func (p *Program) bindSteps(nodes []*graph.Node, plan *memPlan, splitNode int) error {
	p.split = -1
	for i, n := range nodes {
		if i == splitNode {
			p.split = len(p.steps)
		}
		d := defs[n.Op]
		if d.kernel == nil {
			return nodeError(n, "has no kernel")
		}
		aliased := plan.root(n.Outputs[0]) != n.Outputs[0]
		s := step{node: n}
		for _, in := range n.Inputs {
			s.in = append(s.in, p.buf(plan, in))
		}
		for _, o := range n.Outputs {
			s.out = append(s.out, p.buf(plan, o))
		}
		if aliased {
			continue // the output is a view of the input: nothing to run
		}
		k, err := safeKernel(d, n)
		if err != nil {
			return err
		}
		s.k = k
		p.steps = append(p.steps, s)
	}
	if p.split < 0 {
		p.split = len(p.steps)
	}
	return nil
}

// seedSplit orders the nodes so that none before the split reads the seed
// (stably: the relative order is kept on each side) and returns the number of
// forward nodes.
func seedSplit(c *compilation) (int, error) {
	tainted := map[*graph.Value]bool{c.seed: true}
	var fwd, bwd []*graph.Node
	for _, n := range c.g.Nodes {
		t := false
		for _, in := range n.Inputs {
			if tainted[in] {
				t = true
			}
		}
		if t {
			for _, o := range n.Outputs {
				tainted[o] = true
			}
			bwd = append(bwd, n)
		} else {
			fwd = append(fwd, n)
		}
	}
	for _, o := range c.g.Outputs {
		if tainted[o] {
			return 0, fmt.Errorf("output %s depends on the seed", o.Name)
		}
	}
	c.g.Nodes = append(fwd, bwd...)
	return len(fwd), nil
}

// Run copies the inputs in (in graph input order; borrowed ones are read in
// place, see Options.Borrowed), executes, and returns the output buffers.
// They belong to the Program and are overwritten by the next Run.
func (p *Program) Run(inputs ...*graph.Tensor) (outs []*graph.Tensor, err error) {
	if len(inputs) != len(p.Inputs) {
		return nil, fmt.Errorf("program takes %d inputs, got %d", len(p.Inputs), len(inputs))
	}
	for i, in := range p.Inputs {
		if err := p.setInput(in, inputs[i]); err != nil {
			return nil, err
		}
	}
	p.bindArena()
	if err := p.runSteps(0, len(p.steps)); err != nil {
		return nil, err
	}
	return p.outs, nil
}

func (p *Program) setInput(in *graph.Value, t *graph.Tensor) error {
	want := p.bufs[in].Shape
	if t == nil || t.DType != in.DType || !sameShape(t.Shape, want) {
		if t == nil {
			return fmt.Errorf("input %s: missing", in.Name)
		}
		return fmt.Errorf("input %s: got %s%v, want %s%v", in.Name, t.DType, t.Shape, in.DType, want)
	}
	if views, ok := p.lent[in]; ok {
		if len(t.F) != graph.Numel(want) {
			return fmt.Errorf("input %s: %d values for shape %v", in.Name, len(t.F), want)
		}
		for _, w := range views {
			w.F = t.F[:len(t.F):len(t.F)]
		}
		return nil
	}
	if dst := p.bufs[in]; t.DType == graph.Float32 && len(t.F) > inputCopyGrain {
		p.cp.dst, p.cp.src = dst.F, t.F
		parallel(len(t.F), inputCopyGrain, p.cp.body)
		p.cp.dst, p.cp.src = nil, nil
		return nil
	}
	copyData(p.bufs[in], t)
	return nil
}

// inputCopyGrain is the length of a float input above which it is copied
// in on all cores (the weights that a training step's programs read as
// inputs: copied by one core, they would be a serial part of every pass).
const inputCopyGrain = 1 << 15

// inputCopy copies a float input in parts; it is made once per program so
// that running allocates nothing.
type inputCopy struct {
	dst, src []float32
	body     func(lo, hi int)
}

func newInputCopy() *inputCopy {
	c := &inputCopy{}
	c.body = func(lo, hi int) { copy(c.dst[lo:hi], c.src[lo:hi]) }
	return c
}

func (p *Program) runSteps(from, to int) (err error) {
	i := from
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("run: %w", nodeError(p.steps[i].node, "%v", r))
		}
	}()
	if p.hook != nil {
		for ; i < to; i++ {
			p.hook(i)
			s := &p.steps[i]
			s.k(s.in, s.out)
		}
		p.hook(len(p.steps))
		return nil
	}
	if p.prof != nil {
		for ; i < to; i++ {
			s := &p.steps[i]
			t0 := time.Now()
			s.k(s.in, s.out)
			p.prof[i] += time.Since(t0)
		}
		return nil
	}
	for ; i < to; i++ {
		s := &p.steps[i]
		s.k(s.in, s.out)
	}
	return nil
}

// Hook makes the program call hook(i) before it runs step i (in the order
// of StepTimes) and hook(len(steps)) after the last step of each run, or,
// with nil, stops doing so: the boundaries of the steps for a measurement of
// their work (bench's core-scaling simulation). It is checked once per run.
func (p *Program) Hook(hook func(step int)) { p.hook = hook }

// Profile starts (or, with on false, stops and clears) timing every step of
// the program, for OpTimes: where a model spends its time, by operator.
func (p *Program) Profile(on bool) {
	p.prof = nil
	if on {
		p.prof = make([]time.Duration, len(p.steps))
	}
}

// OpTime is the time spent in one operator's steps since Profile(true).
type OpTime struct {
	Op    string
	Steps int // steps of this operator in the program
	Time  time.Duration
}

// OpTimes sums the profiled step times by operator, the most costly first.
func (p *Program) OpTimes() []OpTime {
	by := map[string]*OpTime{}
	var out []*OpTime
	for i, s := range p.steps {
		o := by[s.node.Op]
		if o == nil {
			o = &OpTime{Op: s.node.Op}
			by[s.node.Op] = o
			out = append(out, o)
		}
		o.Steps++
		if p.prof != nil {
			o.Time += p.prof[i]
		}
	}
	res := make([]OpTime, len(out))
	for i, o := range out {
		res[i] = *o
	}
	slices.SortStableFunc(res, func(a, b OpTime) int { return cmp.Compare(b.Time, a.Time) })
	return res
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
	p.bindArena()
	if err := p.runSteps(0, p.split); err != nil {
		return nil, err
	}
	return p.outs, nil
}

// Backward runs the rest after Forward with the given seed (the cotangent of
// GradSpec.Loss); gradients are then read with Grad.
func (p *Program) Backward(seed *graph.Tensor) error {
	if p.seed == nil {
		return fmt.Errorf("program has no seed input")
	}
	if a := p.shared; a != nil && a.ran != p {
		return fmt.Errorf("backward: another program ran on the shared arena since this one's forward")
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

// ArenaFloats is the size of the planned activation arena in float32s.
func (p *Program) ArenaFloats() int { return len(p.arena) }

// safeKernel builds a node's kernel; an unanticipated malformed node becomes
// an error naming it instead of a crash.
func safeKernel(d *opDef, n *graph.Node) (k Kernel, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = nodeError(n, "malformed: %v", r)
		}
	}()
	k, err = d.kernel(n)
	return k, atNode(n, err)
}

// StepTime is the profiled time of one step.
type StepTime struct {
	Node *graph.Node
	Time time.Duration
}

// StepTimes lists the profiled steps in program order.
func (p *Program) StepTimes() []StepTime {
	out := make([]StepTime, len(p.steps))
	for i, s := range p.steps {
		out[i].Node = s.node
		if p.prof != nil {
			out[i].Time = p.prof[i]
		}
	}
	return out
}
