package compile

import (
	"sort"

	"github.com/hyperat/hyperat/graph"
)

// aliasOps produce their input's data unchanged under another shape: their
// output shares the input's buffer and the step disappears.
var aliasOps = map[string]bool{"Reshape": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true, "Identity": true}

// memPlan assigns buffers: constants keep their data, variables and graph
// inputs own a buffer, alias outputs share their input's, and every other
// float value gets a slice of one arena, reused once the value is dead
// (first fit over the free intervals, in step order). Int64 and bool values
// are small and get their own buffers.
type memPlan struct {
	alias    map[*graph.Value]*graph.Value // value -> the value whose buffer it shares
	offset   map[*graph.Value]int
	arenaLen int
}

// root follows aliases to the value that owns the buffer.
func (m *memPlan) root(v *graph.Value) *graph.Value {
	for {
		r, ok := m.alias[v]
		if !ok {
			return v
		}
		v = r
	}
}

func planMemory(nodes []*graph.Node, pinned map[*graph.Value]bool, enabled bool) *memPlan {
	m := &memPlan{alias: map[*graph.Value]*graph.Value{}, offset: map[*graph.Value]int{}}
	if !enabled {
		return m
	}
	for _, n := range nodes {
		if aliasOps[n.Op] && n.Inputs[0].DType == n.Outputs[0].DType {
			m.alias[n.Outputs[0]] = n.Inputs[0]
		}
	}
	planned := func(v *graph.Value) bool {
		r := m.root(v)
		return r != nil && !r.IsConst() && !pinned[r] && r.DType == graph.Float32 && r.Def != nil
	}
	// last use of each planned root, by step index
	end := len(nodes)
	last := map[*graph.Value]int{}
	for i, n := range nodes {
		for _, in := range n.Inputs {
			if in != nil && planned(in) {
				// max: a root that a pinned view keeps alive to the end
				// stays alive through later reads of it
				if r := m.root(in); last[r] < i {
					last[r] = i
				}
			}
		}
		for _, o := range n.Outputs {
			if planned(o) {
				r := m.root(o)
				if last[r] < i {
					last[r] = i
				}
				if pinned[o] {
					last[r] = end
				}
			}
		}
	}
	type span struct{ off, n int }
	var free []span // sorted by offset, coalesced
	top := 0
	alloc := func(n int) int {
		for i, s := range free {
			if s.n >= n {
				off := s.off
				if s.n == n {
					free = append(free[:i], free[i+1:]...)
				} else {
					free[i] = span{s.off + n, s.n - n}
				}
				return off
			}
		}
		off := top
		top += n
		return off
	}
	release := func(off, n int) {
		free = append(free, span{off, n})
		sort.Slice(free, func(a, b int) bool { return free[a].off < free[b].off })
		merged := free[:0]
		for _, s := range free {
			if k := len(merged); k > 0 && merged[k-1].off+merged[k-1].n == s.off {
				merged[k-1].n += s.n
				continue
			}
			merged = append(merged, s)
		}
		free = merged
		// give back a free tail
		if k := len(free); k > 0 && free[k-1].off+free[k-1].n == top {
			top = free[k-1].off
			free = free[:k-1]
		}
	}
	size := func(v *graph.Value) int { return max(graph.Numel(v.StaticShape()), 1) }
	for i, n := range nodes {
		for _, o := range n.Outputs {
			if planned(o) && m.root(o) == o {
				m.offset[o] = alloc(size(o))
				m.arenaLen = max(m.arenaLen, top)
			}
		}
		// free the roots whose last use is this step
		for _, v := range append(append([]*graph.Value{}, n.Inputs...), n.Outputs...) {
			if v == nil || !planned(v) {
				continue
			}
			r := m.root(v)
			if off, ok := m.offset[r]; ok && last[r] == i {
				release(off, size(r))
				last[r] = -1 // released once
			}
		}
	}
	return m
}
