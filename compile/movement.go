package compile

import (
	"github.com/hyperat/hyperat/graph"
)

// Operators that move data without arithmetic: Transpose, Slice and Expand
// run as strided views (view.go), Concat and Split copy blocks, Tile and
// Gather copy through element maps. The gradient ops IndexGrad and
// GatherGrad scatter back through the same views and maps.

func init() {
	define(opDef{name: "Transpose", arity: ins(1, 1), infer: inferTranspose, kernel: kernelView, grad: gradTranspose})
	define(opDef{name: "Slice", arity: ins(3, 5), infer: inferSlice, kernel: kernelView, grad: gradSlice})
	define(opDef{name: "Expand", arity: ins(2, 2), infer: inferExpand, kernel: kernelView, grad: gradExpand})
	define(opDef{name: "Tile", arity: ins(2, 2), infer: inferTile, kernel: kernelIndexMap, grad: gradTile})
	define(opDef{name: "Concat", arity: ins(1, -1), infer: inferConcat, kernel: kernelConcat, grad: gradConcat})
	define(opDef{name: "Split", arity: graph.OpInfo{MinIn: 1, MaxIn: 2, MinOut: 1, MaxOut: -1}, infer: inferSplit, kernel: kernelSplit, grad: gradSplit})
	define(opDef{name: "Gather", arity: ins(2, 2), infer: inferGather, kernel: kernelGather, grad: gradGather})
	// IndexGrad: dy into zeros of attr "shape" through a strided view (vshape, vstrides, voffset) or attr "map" ([]int32, scatter-add over each block of dy of its length; entries < 0 skipped) (project operator)
	define(opDef{name: "IndexGrad", arity: ins(1, 1), infer: inferShapeAttr, kernel: kernelIndexGrad})
	// GatherGrad: (dy, indices) -> scatter-add into zeros of attr "shape" along attr axis (project operator)
	define(opDef{name: "GatherGrad", arity: ins(2, 2), infer: inferShapeAttr, kernel: kernelGatherGrad})
}

// perm returns Transpose's permutation (default: reversed dims).
func perm(n *graph.Node, rank int) ([]int, error) {
	p, ok := n.Attrs.Ints("perm")
	out := make([]int, rank)
	if !ok {
		for i := range out {
			out[i] = rank - 1 - i
		}
		return out, nil
	}
	if len(p) != rank {
		return nil, nodeError(n, "perm %v does not match rank %d", p, rank)
	}
	seen := make([]bool, rank)
	for i, v := range p {
		ax, err := normAxis(n, v, rank)
		if err != nil || seen[ax] {
			return nil, nodeError(n, "invalid perm %v", p)
		}
		seen[ax] = true
		out[i] = ax
	}
	return out, nil
}

func inferTranspose(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	p, err := perm(n, len(in))
	if err != nil {
		return err
	}
	out := make([]int, len(in))
	for i, ax := range p {
		out[i] = in[ax]
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

// indexMap builds out[i] = in[map[i]] for a view described by, per output dim,
// a size and a stride into the input, plus a starting offset.
func indexMap(out []int, strides []int, offset int) []int32 {
	m := make([]int32, graph.Numel(out))
	idx := make([]int, len(out))
	for i := range m {
		o := offset
		for k, v := range idx {
			o += v * strides[k]
		}
		m[i] = int32(o)
		for k := len(idx) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < out[k] {
				break
			}
			idx[k] = 0
		}
	}
	return m
}

// gatherByMap is out[i] = in[m[i]]. Maps made of long runs of consecutive
// indices (transposes that keep the last axis, slices, broadcasts of rows) are
// copied run by run.
func gatherByMap(m []int32) Kernel {
	type run struct{ dst, src, n int32 }
	count := 0
	for i := range m {
		if i == 0 || m[i] != m[i-1]+1 {
			count++
		}
	}
	var runs []run
	if count > 0 && len(m)/count >= 8 {
		for i := 0; i < len(m); {
			j := i + 1
			for j < len(m) && m[j] == m[j-1]+1 {
				j++
			}
			runs = append(runs, run{int32(i), m[i], int32(j - i)})
			i = j
		}
	}
	if runs != nil {
		return func(in, out []*graph.Tensor) {
			src, dst := in[0], out[0]
			for _, r := range runs {
				copyRange(dst, int(r.dst), src, int(r.src), int(r.n))
			}
		}
	}
	return func(in, out []*graph.Tensor) {
		src, dst := in[0], out[0]
		switch src.DType {
		case graph.Float32:
			for i, j := range m {
				dst.F[i] = src.F[j]
			}
		case graph.Int64:
			for i, j := range m {
				dst.I[i] = src.I[j]
			}
		case graph.Bool:
			for i, j := range m {
				dst.B[i] = src.B[j]
			}
		}
	}
}

// kernelView runs Transpose, Slice and Expand as strided views.
func kernelView(n *graph.Node) (Kernel, error) {
	v, ok, err := viewOf(n)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nodeError(n, "is not a view")
	}
	return gatherView(v), nil
}

// IndexMap is the element map of Tile: out[i] = in[map[i]]. The gradient
// pass scatter-adds through it.
func IndexMap(n *graph.Node) ([]int32, error) {
	if n.Op == "Tile" {
		return repeatMap(n), nil
	}
	return nil, nodeError(n, "has no index map")
}

func kernelIndexMap(n *graph.Node) (Kernel, error) {
	m, err := IndexMap(n)
	if err != nil {
		return nil, err
	}
	return gatherByMap(m), nil
}

func inferConcat(n *graph.Node) error {
	first := shapeOf(n.Inputs[0])
	axis, err := normAxis(n, n.Attrs.Int("axis", 0), len(first))
	if err != nil {
		return err
	}
	out := append([]int{}, first...)
	out[axis] = 0
	for _, in := range n.Inputs {
		s := shapeOf(in)
		if len(s) != len(first) || in.DType != n.Inputs[0].DType {
			return nodeError(n, "inputs differ in rank or type")
		}
		for k := range s {
			if k != axis && s[k] != first[k] {
				return nodeError(n, "input shapes %v and %v differ off the concat axis", first, s)
			}
		}
		out[axis] += s[axis]
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

// blockCopy copies an [outer, inner] block of src into dst at column offset.
func kernelConcat(n *graph.Node) (Kernel, error) {
	out := n.Outputs[0].StaticShape()
	axis, _ := normAxis(n, n.Attrs.Int("axis", 0), len(out))
	outer := graph.Numel(out[:axis])
	rowOut := graph.Numel(out[axis:])
	var widths []int
	for _, in := range n.Inputs {
		widths = append(widths, graph.Numel(shapeOf(in)[axis:]))
	}
	return func(in, o []*graph.Tensor) {
		off := 0
		for i, t := range in {
			w := widths[i]
			for r := 0; r < outer; r++ {
				copyRange(o[0], r*rowOut+off, t, r*w, w)
			}
			off += w
		}
	}, nil
}

func copyRange(dst *graph.Tensor, do int, src *graph.Tensor, so, n int) {
	switch src.DType {
	case graph.Float32:
		copy(dst.F[do:do+n], src.F[so:so+n])
	case graph.Int64:
		copy(dst.I[do:do+n], src.I[so:so+n])
	case graph.Bool:
		copy(dst.B[do:do+n], src.B[so:so+n])
	}
}

// splitSizes: the split input, or equal parts (opset 18: the last may be smaller).
func splitSizes(n *graph.Node, dim int) ([]int, error) {
	split, ok, err := constInts(n, 1)
	if err != nil {
		return nil, err
	}
	k := len(n.Outputs)
	sizes := make([]int, k)
	if ok {
		if len(split) != k {
			return nil, nodeError(n, "split %v has %d parts for %d outputs", split, len(split), k)
		}
		total := 0
		for i, s := range split {
			sizes[i] = int(s)
			total += int(s)
		}
		if total != dim {
			return nil, nodeError(n, "split %v does not add up to %d", split, dim)
		}
		return sizes, nil
	}
	chunk := (dim + k - 1) / k
	for i := range sizes {
		sizes[i] = min(chunk, dim-min(dim, i*chunk))
	}
	return sizes, nil
}

func inferSplit(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	axis, err := normAxis(n, n.Attrs.Int("axis", 0), len(in))
	if err != nil {
		return err
	}
	sizes, err := splitSizes(n, in[axis])
	if err != nil {
		return err
	}
	for i, s := range sizes {
		out := append([]int{}, in...)
		out[axis] = s
		setOut(n, i, n.Inputs[0].DType, out)
	}
	return nil
}

func kernelSplit(n *graph.Node) (Kernel, error) {
	in := shapeOf(n.Inputs[0])
	axis, _ := normAxis(n, n.Attrs.Int("axis", 0), len(in))
	sizes, err := splitSizes(n, in[axis])
	if err != nil {
		return nil, err
	}
	outer := graph.Numel(in[:axis])
	inner := graph.Numel(in[axis+1:])
	rowIn := in[axis] * inner
	return func(ins, o []*graph.Tensor) {
		off := 0
		for i, s := range sizes {
			w := s * inner
			for r := 0; r < outer; r++ {
				copyRange(o[i], r*w, ins[0], r*rowIn+off, w)
			}
			off += w
		}
	}, nil
}

// sliceParams resolves Slice's starts/ends/axes/steps into per-dim start and
// step, clamping as the spec says.
func sliceParams(n *graph.Node) (out, start, step []int, err error) {
	in := shapeOf(n.Inputs[0])
	starts, _, err := constInts(n, 1)
	if err != nil {
		return
	}
	ends, _, err := constInts(n, 2)
	if err != nil {
		return
	}
	axes, hasAxes, err := constInts(n, 3)
	if err != nil {
		return
	}
	steps, hasSteps, err := constInts(n, 4)
	if err != nil {
		return
	}
	if len(starts) != len(ends) || (hasAxes && len(axes) != len(starts)) || (hasSteps && len(steps) != len(starts)) {
		err = nodeError(n, "starts, ends, axes and steps differ in length")
		return
	}
	out = append([]int{}, in...)
	start = make([]int, len(in))
	step = make([]int, len(in))
	for i := range step {
		step[i] = 1
	}
	if !hasAxes && len(starts) > len(in) {
		err = nodeError(n, "%d starts for a rank-%d input", len(starts), len(in))
		return
	}
	for i := range starts {
		ax := i
		if hasAxes {
			if ax, err = normAxis(n, axes[i], len(in)); err != nil {
				return
			}
		}
		st := int64(1)
		if hasSteps {
			st = steps[i]
		}
		if st == 0 {
			err = nodeError(n, "step 0")
			return
		}
		d := int64(in[ax])
		s, e := starts[i], ends[i]
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		if st > 0 {
			s = min(max(s, 0), d)
			e = min(max(e, 0), d)
		} else {
			s = min(max(s, 0), d-1)
			e = min(max(e, -1), d-1)
		}
		cnt := int64(0)
		if st > 0 && e > s {
			cnt = (e - s + st - 1) / st
		} else if st < 0 && s > e {
			cnt = (s - e - st - 1) / -st
		}
		out[ax], start[ax], step[ax] = int(cnt), int(s), int(st)
	}
	return
}

func inferSlice(n *graph.Node) error {
	out, _, _, err := sliceParams(n)
	if err != nil {
		return err
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

// repeatMap covers Expand (broadcast to a shape) and Tile (repeat).
func repeatMap(n *graph.Node) []int32 {
	in := shapeOf(n.Inputs[0])
	out := n.Outputs[0].StaticShape()
	st := stridesOf(in)
	m := make([]int32, graph.Numel(out))
	idx := make([]int, len(out))
	off := len(out) - len(in)
	for i := range m {
		o := 0
		for k := off; k < len(out); k++ {
			d := in[k-off]
			o += (idx[k] % d) * st[k-off]
		}
		m[i] = int32(o)
		for k := len(idx) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < out[k] {
				break
			}
			idx[k] = 0
		}
	}
	return m
}

func inferExpand(n *graph.Node) error {
	spec, _, err := constInts(n, 1)
	if err != nil {
		return err
	}
	target := make([]int, len(spec))
	for i, d := range spec {
		target[i] = int(d)
	}
	out, err := broadcastShapes(shapeOf(n.Inputs[0]), target)
	if err != nil {
		return nodeError(n, "%v", err)
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

func inferTile(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	reps, _, err := constInts(n, 1)
	if err != nil {
		return err
	}
	if len(reps) != len(in) {
		return nodeError(n, "repeats %v do not match rank %d", reps, len(in))
	}
	out := make([]int, len(in))
	for i := range in {
		out[i] = in[i] * int(reps[i])
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

func inferGather(n *graph.Node) error {
	data := shapeOf(n.Inputs[0])
	idx := shapeOf(n.Inputs[1])
	if n.Inputs[1].DType != graph.Int64 {
		return nodeError(n, "indices must be integers")
	}
	axis, err := normAxis(n, n.Attrs.Int("axis", 0), len(data))
	if err != nil {
		return err
	}
	out := append(append(append([]int{}, data[:axis]...), idx...), data[axis+1:]...)
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

// GatherMap is Gather's element map for given indices (negative ones wrap).
func GatherMap(n *graph.Node, indices []int64) ([]int32, error) {
	data := shapeOf(n.Inputs[0])
	axis, _ := normAxis(n, n.Attrs.Int("axis", 0), len(data))
	outer := graph.Numel(data[:axis])
	inner := graph.Numel(data[axis+1:])
	d := data[axis]
	m := make([]int32, 0, outer*len(indices)*inner)
	for o := 0; o < outer; o++ {
		for _, ix := range indices {
			if ix < 0 {
				ix += int64(d)
			}
			if ix < 0 || ix >= int64(d) {
				return nil, nodeError(n, "index %d out of range for axis of size %d", ix, d)
			}
			base := (o*d + int(ix)) * inner
			for k := 0; k < inner; k++ {
				m = append(m, int32(base+k))
			}
		}
	}
	return m, nil
}

func kernelGather(n *graph.Node) (Kernel, error) {
	if n.Inputs[1].IsConst() {
		m, err := GatherMap(n, n.Inputs[1].Const.I)
		if err != nil {
			return nil, err
		}
		return gatherByMap(m), nil
	}
	return func(in, out []*graph.Tensor) {
		m, err := GatherMap(n, in[1].I)
		if err != nil {
			panic(err) // data-dependent index error: surfaced by Program.Run
		}
		gatherByMap(m)(in, out)
	}, nil
}

// IndexGrad: through a strided view (injective: dx[view(i)] = dy[i]) or an
// element map (dx[map[i]] += dy[i]).
func kernelIndexGrad(n *graph.Node) (Kernel, error) {
	if vs, ok := n.Attrs.Ints("vshape"); ok {
		st, _ := n.Attrs.Ints("vstrides")
		v := view{offset: int(n.Attrs.Int("voffset", 0))}
		for i := range vs {
			v.shape = append(v.shape, int(vs[i]))
			v.strides = append(v.strides, int(st[i]))
		}
		return scatterView(v), nil
	}
	// the map covers one block of dy (the whole of it for Tile); blocks repeat
	// over the leading dims (Pad's map covers the dims from the first padded
	// one on); entries below 0 read no input (Pad's constant).
	m, _ := n.Attrs["map"].([]int32)
	return func(in, out []*graph.Tensor) {
		dx := out[0].F
		for i := range dx {
			dx[i] = 0
		}
		if len(m) == 0 {
			return
		}
		blocks := len(in[0].F) / len(m)
		xb := len(dx) / max(blocks, 1)
		for b := 0; b < blocks; b++ {
			dy, d := in[0].F[b*len(m):(b+1)*len(m)], dx[b*xb:(b+1)*xb]
			for i, j := range m {
				if j >= 0 {
					d[j] += dy[i]
				}
			}
		}
	}, nil
}

// GatherGrad: scatter-add dy into the gathered positions.
func kernelGatherGrad(n *graph.Node) (Kernel, error) {
	s, _ := n.Attrs.Ints("shape")
	data := make([]int, len(s))
	for i, d := range s {
		data[i] = int(d)
	}
	axis, err := normAxis(n, n.Attrs.Int("axis", 0), len(data))
	if err != nil {
		return nil, err
	}
	outer, d, inner := axisSplit(data, axis)
	return func(in, out []*graph.Tensor) {
		dy, idx, dx := in[0].F, in[1].I, out[0].F
		for i := range dx {
			dx[i] = 0
		}
		src := 0
		for o := 0; o < outer; o++ {
			for _, ix := range idx {
				if ix < 0 {
					ix += int64(d)
				}
				base := (o*d + int(ix)) * inner
				for k := 0; k < inner; k++ {
					dx[base+k] += dy[src]
					src++
				}
			}
		}
	}, nil
}

func gradTranspose(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	p, err := perm(n, len(inShape(n, 0)))
	if err != nil {
		return nil, err
	}
	inv := make([]int, len(p))
	for i, ax := range p {
		inv[ax] = i
	}
	return []*graph.Value{b.transpose(gy[0], inv)}, nil
}

func gradConcat(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	axis, _ := normAxis(n, n.Attrs.Int("axis", 0), len(inShape(n, 0)))
	out := make([]*graph.Value, len(n.Inputs))
	off := 0
	for i := range n.Inputs {
		w := inShape(n, i)[axis]
		if need[i] {
			out[i] = b.op("Slice", nil, gy[0], b.ints(off), b.ints(off+w), b.ints(axis))
		}
		off += w
	}
	return out, nil
}

func gradSplit(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	axis, _ := normAxis(n, n.Attrs.Int("axis", 0), len(inShape(n, 0)))
	parts := make([]*graph.Value, len(n.Outputs))
	for i, o := range n.Outputs {
		parts[i] = gy[i]
		if parts[i] == nil {
			parts[i] = b.constF(graph.NewTensor(graph.Float32, o.StaticShape()))
		}
	}
	return []*graph.Value{b.op("Concat", graph.Attrs{"axis": int64(axis)}, parts...)}, nil
}

// expand: the gradient sums the broadcast away
func gradExpand(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.sumTo(gy[0], n.Inputs[0].StaticShape())}, nil
}

// slice: the gradient scatters into zeros through the slice's strided view
func gradSlice(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	v, _, err := viewOf(n)
	if err != nil {
		return nil, err
	}
	return []*graph.Value{b.op("IndexGrad", graph.Attrs{"shape": i64s(n.Inputs[0].StaticShape()),
		"vshape": i64s(v.shape), "vstrides": i64s(v.strides), "voffset": int64(v.offset)}, gy[0])}, nil
}

// tile: the gradient scatter-adds through the tile's element map
func gradTile(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	m, err := IndexMap(n)
	if err != nil {
		return nil, err
	}
	return []*graph.Value{b.op("IndexGrad", graph.Attrs{"map": m, "shape": i64s(n.Inputs[0].StaticShape())}, gy[0])}, nil
}

func gradGather(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.op("GatherGrad", graph.Attrs{"shape": i64s(inShape(n, 0)), "axis": n.Attrs.Int("axis", 0)}, gy[0], n.Inputs[1])}, nil
}
