package compile

import (
	"sort"

	"github.com/hyperat/hyperat/graph"
)

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
		if isAlias(n) && n.Inputs[0].DType == n.Outputs[0].DType {
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
	var arena firstFit
	size := func(v *graph.Value) int { return max(graph.Numel(v.StaticShape()), 1) }
	for i, n := range nodes {
		for _, o := range n.Outputs {
			if planned(o) && m.root(o) == o {
				m.offset[o] = arena.alloc(size(o))
				m.arenaLen = max(m.arenaLen, arena.top)
			}
		}
		// free the roots whose last use is this step
		for _, v := range append(append([]*graph.Value{}, n.Inputs...), n.Outputs...) {
			if v == nil || !planned(v) {
				continue
			}
			r := m.root(v)
			if off, ok := m.offset[r]; ok && last[r] == i {
				arena.release(off, size(r))
				last[r] = -1 // released once
			}
		}
	}
	return m
}

// firstFit hands out ranges of one growing arena: the first free range
// large enough, else the top. Free ranges are kept sorted and coalesced,
// and a free range at the top gives the top back.
type firstFit struct {
	free []span // sorted by offset, coalesced
	top  int
}

type span struct{ off, n int }

func (f *firstFit) alloc(n int) int {
	for i, s := range f.free {
		if s.n >= n {
			off := s.off
			if s.n == n {
				f.free = append(f.free[:i], f.free[i+1:]...)
			} else {
				f.free[i] = span{s.off + n, s.n - n}
			}
			return off
		}
	}
	off := f.top
	f.top += n
	return off
}

func (f *firstFit) release(off, n int) {
	f.free = append(f.free, span{off, n})
	sort.Slice(f.free, func(a, b int) bool { return f.free[a].off < f.free[b].off })
	merged := f.free[:0]
	for _, s := range f.free {
		if k := len(merged); k > 0 && merged[k-1].off+merged[k-1].n == s.off {
			merged[k-1].n += s.n
			continue
		}
		merged = append(merged, s)
	}
	f.free = merged
	// give back a free tail
	if k := len(f.free); k > 0 && f.free[k-1].off+f.free[k-1].n == f.top {
		f.top = f.free[k-1].off
		f.free = f.free[:k-1]
	}
}
