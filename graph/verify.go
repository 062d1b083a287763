package graph

import "fmt"

// Verify checks the graph's structure: operators registered in Ops (by
// package compile, see DefineOp) with a valid number of inputs and outputs
// and their required inputs present, nodes in topological order (every
// input is a constant, a graph input or an earlier node's output), each
// value defined once and pointing back to its node, graph inputs that are
// neither constants nor node outputs, graph outputs that are defined, and no
// two values under one name (export writes values by name). Passes run it
// in tests after every rewrite.
func (g *Graph) Verify() error {
	names := map[string]*Value{}
	named := func(v *Value) error {
		if w, ok := names[v.Name]; ok && w != v {
			return fmt.Errorf("two values are named %q", v.Name)
		}
		names[v.Name] = v
		return nil
	}
	defined := map[*Value]bool{}
	for i, v := range g.Inputs {
		if v == nil {
			return fmt.Errorf("graph input %d is nil", i)
		}
		if v.Const != nil || v.Def != nil {
			return fmt.Errorf("graph input %s is also a constant or a node output", v.Name)
		}
		if err := named(v); err != nil {
			return err
		}
		defined[v] = true
	}
	for _, p := range g.Params {
		if err := named(p); err != nil {
			return err
		}
	}
	for _, n := range g.Nodes {
		if err := verifyNode(n, defined, named); err != nil {
			return err
		}
	}
	for i, o := range g.Outputs {
		if o == nil {
			return fmt.Errorf("graph output %d is nil", i)
		}
		if o.Const == nil && !defined[o] {
			return fmt.Errorf("graph output %s is never defined", o.Name)
		}
		if err := named(o); err != nil {
			return err
		}
	}
	return nil
}

// verifyNode checks one node against the op table and the values defined
// before it, then marks its outputs defined.
func verifyNode(n *Node, defined map[*Value]bool, named func(*Value) error) error {
	info, ok := Ops[n.Op]
	if !ok {
		if len(Ops) == 0 {
			return fmt.Errorf("node %s: unknown operator %q: no operator is registered (package compile registers them; link it)", n.Name, n.Op)
		}
		return fmt.Errorf("node %s: unknown operator %q", n.Name, n.Op)
	}
	if len(n.Inputs) < info.MinIn || (info.MaxIn >= 0 && len(n.Inputs) > info.MaxIn) {
		return fmt.Errorf("node %s (%s): %d inputs, want %s", n.Name, n.Op, len(n.Inputs), span(info.MinIn, info.MaxIn))
	}
	if len(n.Outputs) < info.MinOut || (info.MaxOut >= 0 && len(n.Outputs) > info.MaxOut) {
		return fmt.Errorf("node %s (%s): %d outputs, want %s", n.Name, n.Op, len(n.Outputs), span(info.MinOut, info.MaxOut))
	}
	for i, in := range n.Inputs {
		if in == nil {
			if i < info.MinIn {
				return fmt.Errorf("node %s (%s): input %d is required", n.Name, n.Op, i)
			}
			continue
		}
		if in.Const == nil && !defined[in] {
			return fmt.Errorf("node %s (%s): input %d (%s) is used before it is defined", n.Name, n.Op, i, in.Name)
		}
		if err := named(in); err != nil {
			return err
		}
	}
	for i, o := range n.Outputs {
		if o == nil {
			return fmt.Errorf("node %s (%s): output %d is nil", n.Name, n.Op, i)
		}
		if defined[o] {
			return fmt.Errorf("node %s (%s): output %s defined twice", n.Name, n.Op, o.Name)
		}
		if o.Def != n {
			return fmt.Errorf("node %s (%s): output %s does not point back to its node", n.Name, n.Op, o.Name)
		}
		if err := named(o); err != nil {
			return err
		}
		defined[o] = true
	}
	return nil
}

// span writes an arity's range: "2", "1..3" or "1 or more".
func span(lo, hi int) string {
	switch {
	case hi < 0:
		return fmt.Sprintf("%d or more", lo)
	case lo == hi:
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
}
