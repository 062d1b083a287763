package compile

import "github.com/hyperat/hyperat/graph"

// view describes a pure data-movement node as a strided view of its input:
// output element (i_0, ..., i_r) reads input element offset + sum_k i_k strides_k.
// Transpose, Slice and Expand are views; their kernels and gradients walk the
// output row by row with no per-element table.
type view struct {
	shape, strides []int
	offset         int
}

// viewOf returns the view of a Transpose, Slice or Expand node.
func viewOf(n *graph.Node) (view, bool, error) {
	in := shapeOf(n.Inputs[0])
	st := stridesOf(in)
	switch n.Op {
	case "Transpose":
		p, err := perm(n, len(in))
		if err != nil {
			return view{}, false, err
		}
		v := view{shape: n.Outputs[0].StaticShape(), strides: make([]int, len(p))}
		for i, ax := range p {
			v.strides[i] = st[ax]
		}
		return v, true, nil
	case "Slice":
		out, start, step, err := sliceParams(n)
		if err != nil {
			return view{}, false, err
		}
		v := view{shape: out, strides: make([]int, len(out))}
		for i := range out {
			v.offset += start[i] * st[i]
			v.strides[i] = step[i] * st[i]
		}
		return v, true, nil
	case "Expand":
		out := n.Outputs[0].StaticShape()
		v := view{shape: out, strides: make([]int, len(out))}
		off := len(out) - len(in)
		for i, d := range in {
			if d != 1 {
				v.strides[off+i] = st[i]
			}
		}
		return v, true, nil
	}
	return view{}, false, nil
}

// rows is the number of output rows (all dims but the last) and the row length.
func (v view) rows() (rows, inner, innerStride int) {
	r := len(v.shape)
	if r == 0 {
		return 1, 1, 0
	}
	return graph.Numel(v.shape[:r-1]), v.shape[r-1], v.strides[r-1]
}

// rowCursor walks the input offsets of consecutive output rows, carrying
// like an odometer instead of dividing the row number by every dim.
type rowCursor struct {
	v   *view
	idx []int // index of the current row in each dim but the last
	off int
}

func (v *view) cursor(r int) rowCursor {
	c := rowCursor{v: v, idx: make([]int, max(len(v.shape)-1, 0)), off: v.offset}
	if r == 0 {
		return c // also a view with no rows (a zero dim), which divides by nothing
	}
	for k := len(c.idx) - 1; k >= 0; k-- {
		d := v.shape[k]
		c.idx[k] = r % d
		c.off += c.idx[k] * v.strides[k]
		r /= d
	}
	return c
}

// next moves to the following row.
func (c *rowCursor) next() {
	for k := len(c.idx) - 1; k >= 0; k-- {
		c.idx[k]++
		c.off += c.v.strides[k]
		if c.idx[k] < c.v.shape[k] {
			return
		}
		c.off -= c.idx[k] * c.v.strides[k]
		c.idx[k] = 0
	}
}

// gatherView is out = view(in), split over rows on all cores.
func gatherView(v view) Kernel {
	rows, inner, s := v.rows()
	var src, dst *graph.Tensor
	body := func(lo, hi int) {
		cur := v.cursor(lo)
		for r := lo; r < hi; r++ {
			so, do := cur.off, r*inner
			cur.next()
			if s == 1 {
				if src.DType == graph.Float32 {
					copy(dst.F[do:do+inner], src.F[so:so+inner])
				} else {
					copyRange(dst, do, src, so, inner)
				}
				continue
			}
			switch src.DType {
			case graph.Float32:
				d := dst.F[do : do+inner]
				for j := range d {
					d[j] = src.F[so+j*s]
				}
			case graph.Int64:
				for j := 0; j < inner; j++ {
					dst.I[do+j] = src.I[so+j*s]
				}
			case graph.Bool:
				for j := 0; j < inner; j++ {
					dst.B[do+j] = src.B[so+j*s]
				}
			}
		}
	}
	grain := max(1, (1<<14)/max(inner, 1))
	return func(in, out []*graph.Tensor) {
		src, dst = in[0], out[0]
		parallel(rows, grain, body)
	}
}

// scatterView is the gradient of an injective view (Transpose, Slice):
// dx = 0, then dx[view(i)] = dy[i]. Rows write disjoint elements, so they
// run on all cores.
func scatterView(v view) Kernel {
	rows, inner, s := v.rows()
	var dy, dx []float32
	body := func(lo, hi int) {
		cur := v.cursor(lo)
		for r := lo; r < hi; r++ {
			so, do := cur.off, r*inner
			cur.next()
			if s == 1 {
				copy(dx[so:so+inner], dy[do:do+inner])
				continue
			}
			for j := 0; j < inner; j++ {
				dx[so+j*s] = dy[do+j]
			}
		}
	}
	grain := max(1, (1<<14)/max(inner, 1))
	// The view is injective: when it has as many elements as dx it covers
	// all of it, and nothing is left to zero. Otherwise dx is zeroed on all
	// cores (the gradient of a slice of a large tensor, such as one of
	// the queries, keys and values, zeroes the whole).
	zero := func(lo, hi int) { clear(dx[lo:hi]) }
	return func(in, out []*graph.Tensor) {
		dy, dx = in[0].F, out[0].F
		if len(dx) != rows*inner {
			parallel(len(dx), 1<<15, zero)
		}
		parallel(rows, grain, body)
	}
}
