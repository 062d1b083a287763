package compile

import "github.com/hyperat/hyperat/graph"

// Memory is what a compiled program holds, in bytes: what a caller needs to
// choose a batch size that fits a memory budget (Plan tells it before any of
// it is allocated).
type Memory struct {
	// Arena is the activations' arena as planned. Programs compiled with one
	// shared Arena cost the largest of theirs, not the sum.
	Arena int64
	// Buffers are the program's own buffers besides: its inputs fed by copy
	// (not those it borrows), outputs, gradients, integer and boolean
	// values, variables.
	Buffers int64
	// Folded are the constants the compilation made (folded subgraphs, such
	// as a transposed weight); the source graph's own constants are not
	// counted: the caller holds them already.
	Folded int64
}

// Own is what the program holds outside a shared arena.
func (m Memory) Own() int64 { return m.Buffers + m.Folded }

// Total is everything the program holds when it has an arena of its own.
func (m Memory) Total() int64 { return m.Arena + m.Buffers + m.Folded }

// Memory is the program's planned memory (see Memory).
func (p *Program) Memory() Memory { return p.mem }

// Plan lowers g as Compile would and returns the memory its program would
// hold, without allocating the program's buffers: a caller plans batch sizes
// with it before compiling the one it picks.
func Plan(g *graph.Graph, opts Options) (Memory, error) {
	c, err := lower(g, opts)
	if err != nil {
		return Memory{}, err
	}
	plan, _, err := planOf(c)
	if err != nil {
		return Memory{}, err
	}
	return measure(c, plan), nil
}

// planOf orders a vector-Jacobian program's nodes forward first (see
// seedSplit) and plans its memory; it returns the plan and the index of the
// first backward node (len(nodes) without a seed).
func planOf(c *compilation) (*memPlan, int, error) {
	splitNode := len(c.g.Nodes)
	if c.seed != nil {
		var err error
		if splitNode, err = seedSplit(c); err != nil {
			return nil, 0, err
		}
	}
	// values that must keep their data after a run: outputs, loss, gradients
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	off := map[string]bool{}
	for _, d := range c.opts.Disable {
		off[d] = true
	}
	return planMemory(c.g.Nodes, pinned, !off["memplan"]), splitNode, nil
}

// measure adds up what newProgram allocates for the lowered graph under plan:
// the arena, a buffer of its own for every value that is neither a constant,
// a view nor in the arena, a private copy of every variable, and the
// constants that lowering made.
func measure(c *compilation, plan *memPlan) Memory {
	m := Memory{Arena: 4 * int64(plan.arenaLen)}
	seen := map[*graph.Value]bool{}
	folded := map[*graph.Tensor]bool{}
	visit := func(v *graph.Value) {
		if v == nil || seen[v] {
			return
		}
		seen[v] = true
		_, inArena := plan.offset[v]
		switch {
		case c.isVar[v]:
			m.Buffers += tensorBytes(v.Const)
		case v.IsConst():
			if !c.source[v.Const] && !folded[v.Const] {
				folded[v.Const] = true
				m.Folded += tensorBytes(v.Const)
			}
		case plan.root(v) != v || inArena || c.borrowed[v]:
		default:
			m.Buffers += int64(graph.Numel(v.StaticShape())) * dtypeBytes(v.DType)
		}
	}
	for _, v := range c.g.Inputs {
		visit(v)
	}
	for _, n := range c.g.Nodes {
		for _, v := range n.Inputs {
			visit(v)
		}
		for _, v := range n.Outputs {
			visit(v)
		}
	}
	for _, v := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		visit(v)
	}
	return m
}

// sourceConsts are the constant tensors of g, which a lowered copy shares.
func sourceConsts(g *graph.Graph) map[*graph.Tensor]bool {
	s := map[*graph.Tensor]bool{}
	add := func(v *graph.Value) {
		if v.IsConst() {
			s[v.Const] = true
		}
	}
	for _, v := range g.Params {
		add(v)
	}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			add(v)
		}
	}
	return s
}

func tensorBytes(t *graph.Tensor) int64 {
	return 4*int64(len(t.F)) + 8*int64(len(t.I)) + int64(len(t.B))
}

func dtypeBytes(d graph.DType) int64 {
	switch d {
	case graph.Int64:
		return 8
	case graph.Bool:
		return 1
	}
	return 4
}

// LargestBatch is the largest batch b <= max whose cost(b), in bytes, is at
// most avail, with that cost; 0 when not even batch 1 fits. Costs of
// programs grow about linearly with the batch, so it fits a line through
// cost(1) and cost(2), and checks its pick with cost itself, stepping down
// until the pick fits: a handful of plans, not one per batch size.
func LargestBatch(avail int64, maxBatch int, cost func(b int) (int64, error)) (int, int64, error) {
	c1, err := cost(1)
	if err != nil || c1 > avail {
		return 0, c1, err
	}
	if maxBatch == 1 {
		return 1, c1, nil
	}
	c2, err := cost(2)
	if err != nil {
		return 0, 0, err
	}
	per := max(c2-c1, 1)
	b := min(maxBatch, 1+int((avail-c1)/per))
	for b > 1 {
		c, err := cost(b)
		if err != nil {
			return 0, 0, err
		}
		if c <= avail {
			return b, c, nil
		}
		// step down by what the excess costs at the line's slope, at least one
		b = min(b-1, b-int((c-avail+per-1)/per))
	}
	return 1, c1, nil
}
