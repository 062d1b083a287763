package compile

import (
	"github.com/hyperat/hyperat/graph"
)

// ScatterND (https://onnx.ai/onnx/operators/onnx__ScatterND.html): a copy of
// data with the slices that the index tuples name combined with the updates,
// tuple by tuple in order, as the reduction attribute says (none replaces;
// add, mul from opset 16; max, min from opset 18). Its gradient replays the
// scatter (ScatterNDGrad), so it holds for indices computed at run time and
// for tuples that repeat.

func init() {
	define(opDef{name: "ScatterND", arity: ins(3, 3), infer: inferScatterND, kernel: kernelScatterND, grad: gradScatterND})
	// ScatterNDGrad: (dy, data, indices, updates) -> d data ("wrt" 0) or
	// d updates ("wrt" 2), for ScatterND's "reduction" (project operator)
	define(opDef{name: "ScatterNDGrad", arity: ins(4, 4), infer: inferScatterNDGrad, kernel: kernelScatterNDGrad})
}

func inferScatterND(n *graph.Node) error {
	setOut(n, 0, n.Inputs[0].DType, shapeOf(n.Inputs[0]))
	return nil
}

// scatterPlan is the geometry of one ScatterND: each index tuple names a
// slice of data of size slice; tuple t's updates are updates[t*slice:].
type scatterPlan struct {
	data          []int
	q             int // the length of an index tuple
	tuples, slice int
	red           string
}

func planScatterND(n *graph.Node, data, ind, upd []int) (*scatterPlan, error) {
	if len(ind) == 0 {
		return nil, nodeError(n, "indices must have rank >= 1")
	}
	q := ind[len(ind)-1]
	if q > len(data) {
		return nil, nodeError(n, "index tuples of %d for data of rank %d", q, len(data))
	}
	want := append(append([]int{}, ind[:len(ind)-1]...), data[q:]...)
	if !sameShape(want, upd) {
		return nil, nodeError(n, "updates %v, want %v", upd, want)
	}
	red := n.Attrs.Str("reduction", "none")
	switch red {
	case "none", "add", "mul", "max", "min":
	default:
		return nil, nodeError(n, "reduction %q is not supported", red)
	}
	return &scatterPlan{data: data, q: q, tuples: graph.Numel(ind[:len(ind)-1]), slice: graph.Numel(data[q:]), red: red}, nil
}

// offsets returns where each tuple's slice starts in data, negative indices
// counted from the end of their axis.
func (pl *scatterPlan) offsets(ind []int64, off []int) {
	st := stridesOf(pl.data)
	for t := range pl.tuples {
		o := 0
		for d := 0; d < pl.q; d++ {
			i := int(ind[t*pl.q+d])
			if i < 0 {
				i += pl.data[d]
			}
			o += i * st[d]
		}
		off[t] = o
	}
}

func kernelScatterND(n *graph.Node) (Kernel, error) {
	pl, err := planScatterND(n, shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1]), shapeOf(n.Inputs[2]))
	if err != nil {
		return nil, err
	}
	dt := n.Inputs[0].DType
	off := make([]int, pl.tuples)
	return func(in, out []*graph.Tensor) {
		copyRange(out[0], 0, in[0], 0, graph.Numel(pl.data))
		pl.offsets(in[1].I, off)
		for t, o := range off {
			for e := 0; e < pl.slice; e++ {
				u := t*pl.slice + e
				switch dt {
				case graph.Float32:
					out[0].F[o+e] = scatterReduce(pl.red, out[0].F[o+e], in[2].F[u])
				case graph.Int64:
					out[0].I[o+e] = scatterReduce(pl.red, out[0].I[o+e], in[2].I[u])
				case graph.Bool:
					out[0].B[o+e] = in[2].B[u]
				}
			}
		}
	}, nil
}

// scatterReduce combines an element a with an update b as ScatterND's
// reduction attribute says ("none" keeps the update).
func scatterReduce[T float32 | int64](red string, a, b T) T {
	switch red {
	case "add":
		return a + b
	case "mul":
		return a * b
	case "max":
		return max(a, b)
	case "min":
		return min(a, b)
	}
	return b
}

// gradScatterND: the gradients of data and updates, each one ScatterNDGrad.
func gradScatterND(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, 3)
	for _, i := range []int{0, 2} {
		if need[i] {
			out[i] = b.op("ScatterNDGrad", graph.Attrs{"reduction": n.Attrs.Str("reduction", "none"), "wrt": int64(i)},
				gy[0], n.Inputs[0], n.Inputs[1], n.Inputs[2])
		}
	}
	return out, nil
}

func inferScatterNDGrad(n *graph.Node) error {
	wrt := int(n.Attrs.Int("wrt", 0))
	if wrt != 0 && wrt != 2 {
		return nodeError(n, "wrt %d is neither data (0) nor updates (2)", wrt)
	}
	setOut(n, 0, graph.Float32, shapeOf(n.Inputs[1+wrt]))
	return nil
}

// kernelScatterNDGrad replays the scatter element by element. Each data
// element ends as a chain d, u1, u2, ... of the updates written to it, in
// tuple order:
//
//	none     y = u_last              dd = 0 where written, du_last = dy
//	add      y = d + sum u           dd = dy, du = dy
//	mul      y = d * prod u          dd = dy prod u, du_i = dy d prod_{j!=i} u_j
//	max/min  y = the first extreme   its element gets dy, the others 0
func kernelScatterNDGrad(n *graph.Node) (Kernel, error) {
	pl, err := planScatterND(n, shapeOf(n.Inputs[1]), shapeOf(n.Inputs[2]), shapeOf(n.Inputs[3]))
	if err != nil {
		return nil, err
	}
	wrt := int(n.Attrs.Int("wrt", 0))
	off := make([]int, pl.tuples)
	return func(in, out []*graph.Tensor) {
		dy, data, upd, g := in[0].F, in[1].F, in[3].F, out[0].F
		pl.offsets(in[2].I, off)
		// chains[p]: the updates written to data element p, in order
		chains := map[int][]int{}
		for t, o := range off {
			for e := 0; e < pl.slice; e++ {
				chains[o+e] = append(chains[o+e], t*pl.slice+e)
			}
		}
		if wrt == 0 {
			copy(g, dy)
		} else {
			clear(g)
		}
		var none float32
		for p, us := range chains {
			gd := &none
			if wrt == 0 {
				gd = &g[p]
			}
			scatterChainGrad(pl.red, wrt, dy[p], data[p], us, upd, gd, g)
		}
	}, nil
}

// scatterChainGrad writes the gradient of one data element's chain: into
// *gd for data (wrt 0), into gu[u] for its updates u (wrt 2); the other is
// not written.
func scatterChainGrad(red string, wrt int, dy, d float32, us []int, upd []float32, gd *float32, gu []float32) {
	switch red {
	case "none":
		if wrt == 0 {
			*gd = 0
		} else {
			gu[us[len(us)-1]] = dy
		}
	case "add":
		if wrt == 2 {
			for _, u := range us {
				gu[u] = dy
			}
		}
	case "mul":
		if wrt == 0 {
			prod := dy
			for _, u := range us {
				prod *= upd[u]
			}
			*gd = prod
			return
		}
		for i, u := range us {
			prod := dy * d
			for j, v := range us {
				if j != i {
					prod *= upd[v]
				}
			}
			gu[u] = prod
		}
	case "max", "min":
		best, at := d, -1
		for _, u := range us {
			if red == "max" && upd[u] > best || red == "min" && upd[u] < best {
				best, at = upd[u], u
			}
		}
		switch {
		case wrt == 0 && at >= 0:
			*gd = 0
		case wrt == 2 && at >= 0:
			gu[at] = dy
		}
	}
}
