package compile

import "unsafe"

// InArena reports whether f lies in the arena's current memory.
func InArena(a *Arena, f []float32) bool {
	if len(f) == 0 || len(a.buf) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(&a.buf[0]))
	p := uintptr(unsafe.Pointer(&f[0]))
	return p >= lo && p < lo+uintptr(len(a.buf))*4
}
