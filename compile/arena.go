package compile

import "github.com/hyperat/hyperat/graph"

// An Arena is scratch memory that several programs share: programs that one
// caller runs one at a time, reading each run's outputs and gradients (which
// are never in an arena) before starting the next. Their activations then
// cost what the largest program needs instead of the sum of all: a trainer
// with an attack program and training programs at two batch sizes keeps one
// arena, not three. Programs sharing an arena must not run concurrently.
type Arena struct {
	buf []float32
	gen int      // bumped when buf is replaced, so programs rebind
	ran *Program // the program whose activations the arena holds
}

// NewArena returns an empty arena; programs compiled with it grow it.
func NewArena() *Arena { return &Arena{} }

// Floats is the arena's size in float32s.
func (a *Arena) Floats() int { return len(a.buf) }

// reserve grows the arena to at least n floats.
func (a *Arena) reserve(n int) {
	if n > len(a.buf) {
		a.buf = make([]float32, n)
		a.gen++
	}
}

// arenaRef is a buffer of a program that lives in a shared arena.
type arenaRef struct {
	t      *graph.Tensor
	off, n int
}

// bindArena points the program's arena buffers at the shared arena's
// current memory, if it was replaced since the program last ran, and marks
// the program as the arena's user.
func (p *Program) bindArena() {
	a := p.shared
	if a == nil {
		return
	}
	if p.gen != a.gen {
		for _, r := range p.bound {
			r.t.F = a.buf[r.off : r.off+r.n : r.off+r.n]
		}
		p.gen = a.gen
	}
	a.ran = p
}
