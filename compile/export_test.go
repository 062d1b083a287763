package compile

import (
	"unsafe"

	"github.com/hyperat/hyperat/graph"
)

// InArena reports whether f lies in the arena's current memory.
func InArena(a *Arena, f []float32) bool {
	if len(f) == 0 || len(a.buf) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(&a.buf[0]))
	p := uintptr(unsafe.Pointer(&f[0]))
	return p >= lo && p < lo+uintptr(len(a.buf))*4
}

// Allocated counts the bytes the program's buffers really occupy, each
// backing array once: its arena, and every other buffer that is not a
// constant of the source graph src.
func Allocated(p *Program, src *graph.Graph) int64 {
	source := map[unsafe.Pointer]bool{}
	for t := range sourceConsts(src) {
		source[dataOf(t)] = true
	}
	seen := map[unsafe.Pointer]bool{}
	n := 4 * int64(len(p.arena))
	inArena := func(ptr unsafe.Pointer) bool {
		if len(p.arena) == 0 {
			return false
		}
		lo := uintptr(unsafe.Pointer(&p.arena[0]))
		return uintptr(ptr) >= lo && uintptr(ptr) < lo+uintptr(len(p.arena))*4
	}
	for _, t := range p.bufs {
		ptr := dataOf(t)
		if ptr == nil || seen[ptr] || source[ptr] || inArena(ptr) {
			continue
		}
		seen[ptr] = true
		n += tensorBytes(t)
	}
	return n
}

func dataOf(t *graph.Tensor) unsafe.Pointer {
	switch {
	case len(t.F) > 0:
		return unsafe.Pointer(unsafe.SliceData(t.F))
	case len(t.I) > 0:
		return unsafe.Pointer(unsafe.SliceData(t.I))
	case len(t.B) > 0:
		return unsafe.Pointer(unsafe.SliceData(t.B))
	}
	return nil
}
