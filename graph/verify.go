package graph

import "fmt"

// Verify checks the graph's structure: known operators with a valid number of
// inputs and outputs, nodes in topological order, each value defined once, and
// outputs defined. Passes run it in tests after every rewrite.
func (g *Graph) Verify() error {
	defined := map[*Value]bool{}
	for _, v := range g.Inputs {
		if v.Const != nil || v.Def != nil {
			return fmt.Errorf("graph input %s is also a constant or a node output", v.Name)
		}
		defined[v] = true
	}
	for _, n := range g.Nodes {
		info, ok := Ops[n.Op]
		if !ok {
			return fmt.Errorf("node %s: unknown operator %q", n.Name, n.Op)
		}
		if len(n.Inputs) < info.MinIn || (info.MaxIn >= 0 && len(n.Inputs) > info.MaxIn) {
			return fmt.Errorf("node %s (%s): %d inputs, want %d..%d", n.Name, n.Op, len(n.Inputs), info.MinIn, info.MaxIn)
		}
		if info.Outs >= 0 && len(n.Outputs) != info.Outs {
			return fmt.Errorf("node %s (%s): %d outputs, want %d", n.Name, n.Op, len(n.Outputs), info.Outs)
		}
		for i, in := range n.Inputs {
			if in == nil {
				continue
			}
			if in.Const == nil && !defined[in] {
				return fmt.Errorf("node %s (%s): input %d (%s) is used before it is defined", n.Name, n.Op, i, in.Name)
			}
		}
		for _, o := range n.Outputs {
			if defined[o] {
				return fmt.Errorf("node %s (%s): output %s defined twice", n.Name, n.Op, o.Name)
			}
			if o.Def != n {
				return fmt.Errorf("node %s (%s): output %s does not point back to its node", n.Name, n.Op, o.Name)
			}
			defined[o] = true
		}
	}
	for _, o := range g.Outputs {
		if o.Const == nil && !defined[o] {
			return fmt.Errorf("graph output %s is never defined", o.Name)
		}
	}
	return nil
}
