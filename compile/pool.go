package compile

import (
	"math"

	"github.com/hyperat/hyperat/graph"
)

// Pad (constant, reflect, edge, wrap) through an element map; AveragePool and
// GlobalAveragePool; BatchNormalization in its inference form.
// Pad's gradient scatter-adds through the same map (IndexGrad), AveragePool's
// through its window table (AveragePoolGrad).

func init() {
	define(opDef{name: "Pad", arity: ins(2, 4), infer: inferPad, kernel: kernelPad, grad: gradPad})
	define(opDef{name: "GlobalAveragePool", arity: ins(1, 1), infer: inferGlobalPool, kernel: kernelGlobalPool, grad: gradGlobalPool})
	define(opDef{name: "AveragePool", arity: ins(1, 1), infer: inferAvgPool, kernel: kernelAvgPool, grad: gradAvgPool})
	// AveragePoolGrad: dy -> dx; AveragePool's attrs plus "shape" of x (project operator)
	define(opDef{name: "AveragePoolGrad", arity: ins(1, 1), infer: inferShapeAttr, kernel: kernelAvgPoolGrad})
	define(opDef{name: "BatchNormalization", arity: ins(5, 5), infer: inferFloatSame, kernel: kernelBatchNorm, grad: gradBatchNorm})
}

func inferFloatSame(n *graph.Node) error {
	if n.Inputs[0].DType != graph.Float32 {
		return nodeError(n, "wants a float input")
	}
	setOut(n, 0, graph.Float32, shapeOf(n.Inputs[0]))
	return nil
}

// ---- Pad ----

// padPlan: output dims, and the element map of the dims from the first padded
// one on (out[o*inner+i] = in[o*inInner+m[i]], -1 for the constant).
type padPlan struct {
	out          []int
	outer, inner int
	inInner      int
	m            []int32
}

func planPad(n *graph.Node) (*padPlan, error) {
	in := shapeOf(n.Inputs[0])
	r := len(in)
	pads, _, err := constInts(n, 1)
	if err != nil {
		return nil, err
	}
	axes := make([]int, r)
	for i := range axes {
		axes[i] = i
	}
	if a, ok, err := constInts(n, 3); err != nil {
		return nil, err
	} else if ok {
		axes = axes[:0]
		for _, x := range a {
			ax, err := normAxis(n, x, r)
			if err != nil {
				return nil, err
			}
			axes = append(axes, ax)
		}
	}
	if len(pads) != 2*len(axes) {
		return nil, nodeError(n, "pads %v: want %d values for %d axes", pads, 2*len(axes), len(axes))
	}
	lo, hi := make([]int, r), make([]int, r)
	for i, ax := range axes {
		lo[ax], hi[ax] = int(pads[i]), int(pads[i+len(axes)])
	}
	mode := n.Attrs.Str("mode", "constant")
	pl := &padPlan{out: make([]int, r)}
	first := r
	for i := range in {
		pl.out[i] = in[i] + lo[i] + hi[i]
		if pl.out[i] < 0 {
			return nil, nodeError(n, "pads %v crop dim %d (size %d) below zero", pads, i, in[i])
		}
		if (lo[i] != 0 || hi[i] != 0) && first == r {
			first = i
		}
		if mode != "constant" && in[i] == 0 && pl.out[i] > 0 {
			return nil, nodeError(n, "mode %s cannot pad an empty dim", mode)
		}
	}
	switch mode {
	case "constant", "reflect", "edge", "wrap":
	default:
		return nil, nodeError(n, "mode %q is not one of constant, reflect, edge, wrap", mode)
	}
	pl.outer = graph.Numel(pl.out[:first])
	pl.inner = graph.Numel(pl.out[first:])
	pl.inInner = graph.Numel(in[first:])
	inSt := stridesOf(in[first:])
	outSp := pl.out[first:]
	pl.m = make([]int32, pl.inner)
	idx := make([]int, len(outSp))
	for o := 0; o < pl.inner; o++ {
		rem := o
		for d := len(outSp) - 1; d >= 0; d-- {
			idx[d] = rem % outSp[d]
			rem /= outSp[d]
		}
		src := 0
		for d := range outSp {
			size := in[first+d]
			c := idx[d] - lo[first+d]
			if c < 0 || c >= size {
				switch mode {
				case "constant":
					src = -1
				case "edge":
					c = min(max(c, 0), size-1)
				case "wrap":
					c = ((c % size) + size) % size
				case "reflect":
					if size == 1 {
						c = 0
					} else {
						p := 2 * (size - 1)
						c = ((c % p) + p) % p
						if c >= size {
							c = p - c
						}
					}
				}
			}
			if src < 0 {
				break
			}
			src += c * inSt[d]
		}
		pl.m[o] = int32(src)
	}
	return pl, nil
}

func inferPad(n *graph.Node) error {
	pl, err := planPad(n)
	if err != nil {
		return err
	}
	setOut(n, 0, n.Inputs[0].DType, pl.out)
	return nil
}

func kernelPad(n *graph.Node) (Kernel, error) {
	pl, err := planPad(n)
	if err != nil {
		return nil, err
	}
	hasValue := n.In(2) != nil
	dt := n.Inputs[0].DType
	return func(in, out []*graph.Tensor) {
		var cf float32
		var ci int64
		var cb bool
		if hasValue { // constant_value, a scalar (or one element) of the data's type
			switch t := in[2]; {
			case len(t.F) > 0:
				cf = t.F[0]
			case len(t.I) > 0:
				ci = t.I[0]
			case len(t.B) > 0:
				cb = t.B[0]
			}
		}
		for b := 0; b < pl.outer; b++ {
			so, do := b*pl.inInner, b*pl.inner
			for i, j := range pl.m {
				switch dt {
				case graph.Float32:
					if j < 0 {
						out[0].F[do+i] = cf
					} else {
						out[0].F[do+i] = in[0].F[so+int(j)]
					}
				case graph.Int64:
					if j < 0 {
						out[0].I[do+i] = ci
					} else {
						out[0].I[do+i] = in[0].I[so+int(j)]
					}
				case graph.Bool:
					if j < 0 {
						out[0].B[do+i] = cb
					} else {
						out[0].B[do+i] = in[0].B[so+int(j)]
					}
				}
			}
		}
	}, nil
}

// gradPad: dy scatter-added through the map; the constant's gradient is the
// sum of dy over the padded positions.
func gradPad(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	pl, err := planPad(n)
	if err != nil {
		return nil, err
	}
	out := make([]*graph.Value, len(n.Inputs))
	out[0] = b.op("IndexGrad", graph.Attrs{"map": pl.m, "shape": i64s(inShape(n, 0))}, gy[0])
	if len(need) > 2 && need[2] {
		mask := graph.NewTensor(graph.Float32, pl.out)
		for o := 0; o < pl.outer; o++ {
			for i, j := range pl.m {
				if j < 0 {
					mask.F[o*pl.inner+i] = 1
				}
			}
		}
		s := b.op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, b.mul(gy[0], b.constF(mask)))
		out[2] = b.reshape(s, inShape(n, 2))
	}
	return out, nil
}

// ---- GlobalAveragePool ----

func inferGlobalPool(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	if len(in) < 2 {
		return nodeError(n, "input %v has no channel dim", in)
	}
	out := append([]int{}, in...)
	for i := 2; i < len(out); i++ {
		out[i] = 1
	}
	setOut(n, 0, graph.Float32, out)
	return nil
}

func kernelGlobalPool(n *graph.Node) (Kernel, error) {
	in := shapeOf(n.Inputs[0])
	rows, k := graph.Numel(in[:2]), graph.Numel(in[2:])
	return func(in, out []*graph.Tensor) {
		for r := 0; r < rows; r++ {
			var s float32
			for _, x := range in[0].F[r*k : (r+1)*k] {
				s += x
			}
			out[0].F[r] = s / float32(k)
		}
	}, nil
}

func gradGlobalPool(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	in := inShape(n, 0)
	k := graph.Numel(in[2:])
	g := b.mul(gy[0], b.scalar(1/float32(k)))
	return []*graph.Value{b.op("Expand", nil, g, b.ints(in...))}, nil
}

// ---- AveragePool ----

// poolPlan: for each output position of one (image, channel) plane, the
// input offsets of its window (CSR: idx[start[p]:start[p+1]]) and 1/count.
type poolPlan struct {
	out         []int
	planes      int
	inPl, outPl int
	start, idx  []int32
	scale       []float32
}

// poolWindow is the geometry of a pooling: per spatial dim the kernel size,
// stride, dilation, the pads at the start and end (pads[i], pads[i+sp]) and
// the output size, and whether padded positions count in the average.
type poolWindow struct {
	k, strides, dil, pads, inSp, outSp []int
	incl                               bool
}

// poolGeometry reads a pooling node's attributes (the spec's defaults,
// auto_pad and ceil_mode) for an input of shape in.
func poolGeometry(n *graph.Node, in []int) (*poolWindow, error) {
	if len(in) < 3 {
		return nil, nodeError(n, "input %v has no spatial dims", in)
	}
	ks, ok := n.Attrs.Ints("kernel_shape")
	sp := len(in) - 2
	if !ok || len(ks) != sp {
		return nil, nodeError(n, "kernel_shape %v does not fit input %v", ks, in)
	}
	k := make([]int, sp)
	for i, x := range ks {
		k[i] = int(x)
		if k[i] < 1 {
			return nil, nodeError(n, "empty kernel %v", ks)
		}
	}
	strides, dil := convAttr(n, "strides", sp, 1), convAttr(n, "dilations", sp, 1)
	pads := make([]int, 2*sp)
	if v, ok := n.Attrs.Ints("pads"); ok {
		if len(v) != 2*sp {
			return nil, nodeError(n, "pads %v: want %d values", v, 2*sp)
		}
		for i := range v {
			pads[i] = int(v[i])
		}
	}
	ceil := n.Attrs.Int("ceil_mode", 0) != 0
	incl := n.Attrs.Int("count_include_pad", 0) != 0
	autoPad := n.Attrs.Str("auto_pad", "NOTSET")
	inSp := in[2:]
	outSp := make([]int, sp)
	for i := 0; i < sp; i++ {
		if strides[i] < 1 || dil[i] < 1 {
			return nil, nodeError(n, "strides %v and dilations %v must be positive", strides, dil)
		}
		ek := (k[i]-1)*dil[i] + 1
		switch autoPad {
		case "NOTSET":
		case "VALID":
			pads[i], pads[i+sp] = 0, 0
		case "SAME_UPPER", "SAME_LOWER":
			o := (inSp[i] + strides[i] - 1) / strides[i]
			total := max((o-1)*strides[i]+ek-inSp[i], 0)
			lo := total / 2
			if autoPad == "SAME_LOWER" {
				lo = total - total/2
			}
			pads[i], pads[i+sp] = lo, total-lo
		default:
			return nil, nodeError(n, "auto_pad %q is not supported", autoPad)
		}
		span := inSp[i] + pads[i] + pads[i+sp] - ek
		if span < 0 {
			return nil, nodeError(n, "kernel %v larger than padded input %v", ks, inSp)
		}
		o := span/strides[i] + 1
		if ceil && span%strides[i] != 0 {
			o++
			// the last window must start inside the input or its begin pad
			if (o-1)*strides[i] >= inSp[i]+pads[i] {
				o--
			}
		}
		outSp[i] = o
	}
	return &poolWindow{k: k, strides: strides, dil: dil, pads: pads, inSp: inSp, outSp: outSp, incl: incl}, nil
}

func planPool(n *graph.Node, in []int) (*poolPlan, error) {
	w, err := poolGeometry(n, in)
	if err != nil {
		return nil, err
	}
	k, strides, dil, pads, inSp, outSp, incl := w.k, w.strides, w.dil, w.pads, w.inSp, w.outSp, w.incl
	sp := len(inSp)
	pl := &poolPlan{out: append(append([]int{}, in[:2]...), outSp...), planes: in[0] * in[1],
		inPl: graph.Numel(inSp), outPl: graph.Numel(outSp)}
	inSt := stridesOf(inSp)
	K := graph.Numel(k)
	oIdx, kIdx := make([]int, sp), make([]int, sp)
	pl.start = make([]int32, 0, pl.outPl+1)
	for p := 0; p < pl.outPl; p++ {
		pl.start = append(pl.start, int32(len(pl.idx)))
		r := p
		for i := sp - 1; i >= 0; i-- {
			oIdx[i] = r % outSp[i]
			r /= outSp[i]
		}
		cnt := 0
		for kk := 0; kk < K; kk++ {
			r := kk
			for i := sp - 1; i >= 0; i-- {
				kIdx[i] = r % k[i]
				r /= k[i]
			}
			off, inside, inPad := 0, true, true
			for i := 0; i < sp; i++ {
				c := oIdx[i]*strides[i] - pads[i] + kIdx[i]*dil[i]
				if c < 0 || c >= inSp[i] {
					inside = false
				}
				if c < -pads[i] || c >= inSp[i]+pads[i+sp] {
					inPad = false
				}
				off += c * inSt[i]
			}
			if inside {
				pl.idx = append(pl.idx, int32(off))
				cnt++
			} else if incl && inPad {
				cnt++
			}
		}
		s := float32(0)
		if cnt > 0 {
			s = 1 / float32(cnt)
		}
		pl.scale = append(pl.scale, s)
	}
	pl.start = append(pl.start, int32(len(pl.idx)))
	return pl, nil
}

func inferAvgPool(n *graph.Node) error {
	if n.Inputs[0].DType != graph.Float32 {
		return nodeError(n, "wants a float input")
	}
	pl, err := planPool(n, shapeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	setOut(n, 0, graph.Float32, pl.out)
	return nil
}

func kernelAvgPool(n *graph.Node) (Kernel, error) {
	pl, err := planPool(n, shapeOf(n.Inputs[0]))
	if err != nil {
		return nil, err
	}
	return func(in, out []*graph.Tensor) {
		for c := 0; c < pl.planes; c++ {
			x, y := in[0].F[c*pl.inPl:(c+1)*pl.inPl], out[0].F[c*pl.outPl:(c+1)*pl.outPl]
			for p := range y {
				var s float32
				for _, j := range pl.idx[pl.start[p]:pl.start[p+1]] {
					s += x[j]
				}
				y[p] = s * pl.scale[p]
			}
		}
	}, nil
}

func gradAvgPool(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	attrs := graph.Attrs{"shape": i64s(inShape(n, 0))}
	for k, v := range n.Attrs {
		attrs[k] = v
	}
	return []*graph.Value{b.op("AveragePoolGrad", attrs, gy[0])}, nil
}

func kernelAvgPoolGrad(n *graph.Node) (Kernel, error) {
	pl, err := planPool(n, n.Outputs[0].StaticShape())
	if err != nil {
		return nil, err
	}
	return func(in, out []*graph.Tensor) {
		for c := 0; c < pl.planes; c++ {
			dx, dy := out[0].F[c*pl.inPl:(c+1)*pl.inPl], in[0].F[c*pl.outPl:(c+1)*pl.outPl]
			for i := range dx {
				dx[i] = 0
			}
			for p, g := range dy {
				g *= pl.scale[p]
				for _, j := range pl.idx[pl.start[p]:pl.start[p+1]] {
					dx[j] += g
				}
			}
		}
	}, nil
}

// ---- BatchNormalization (inference: running statistics) ----

func kernelBatchNorm(n *graph.Node) (Kernel, error) {
	x := shapeOf(n.Inputs[0])
	if len(x) < 2 {
		return nil, nodeError(n, "input %v has no channel dim", x)
	}
	c := x[1]
	for i := 1; i < 5; i++ {
		if s := shapeOf(n.Inputs[i]); graph.Numel(s) != c || len(s) != 1 {
			return nil, nodeError(n, "input %d has shape %v, want [%d]", i, s, c)
		}
	}
	eps := float64(n.Attrs.Float("epsilon", 1e-5))
	inner := graph.Numel(x[2:])
	a, sh := make([]float32, c), make([]float32, c)
	return func(in, out []*graph.Tensor) {
		for ch := 0; ch < c; ch++ {
			s := float32(1 / math.Sqrt(float64(in[4].F[ch])+eps))
			a[ch] = in[1].F[ch] * s
			sh[ch] = in[2].F[ch] - in[3].F[ch]*a[ch]
		}
		for b := 0; b < x[0]; b++ {
			for ch := 0; ch < c; ch++ {
				o := (b*c + ch) * inner
				for i, v := range in[0].F[o : o+inner] {
					out[0].F[o+i] = v*a[ch] + sh[ch]
				}
			}
		}
	}, nil
}

// gradBatchNorm: y = (x - mean) / sqrt(var + eps) * scale + bias, per channel.
func gradBatchNorm(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	x := inShape(n, 0)
	c := x[1]
	cs := []int{c}
	for range x[2:] {
		cs = append(cs, 1)
	}
	axes := []int{0}
	for i := 2; i < len(x); i++ {
		axes = append(axes, i)
	}
	red := func(v *graph.Value) *graph.Value {
		return b.op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, v, b.ints(axes...))
	}
	sd := b.op("Sqrt", nil, b.op("Add", nil, n.Inputs[4], b.scalar(n.Attrs.Float("epsilon", 1e-5))))
	a := b.div(n.Inputs[1], sd)
	out := make([]*graph.Value, 5)
	if need[0] {
		out[0] = b.mul(gy[0], b.reshape(a, cs))
	}
	var xm *graph.Value
	if need[1] || need[4] {
		xm = b.sub(n.Inputs[0], b.reshape(n.Inputs[3], cs))
	}
	if need[1] {
		out[1] = red(b.mul(gy[0], b.div(xm, b.reshape(sd, cs))))
	}
	if need[2] || need[3] {
		db := red(gy[0])
		if need[2] {
			out[2] = db
		}
		if need[3] {
			out[3] = b.neg(b.mul(db, a))
		}
	}
	if need[4] {
		// d/dvar = sum(dy (x - mean)) * scale * (-1/2) (var + eps)^(-3/2)
		k := b.div(b.mul(n.Inputs[1], b.scalar(-0.5)), b.mul(sd, b.mul(sd, sd)))
		out[4] = b.mul(red(b.mul(gy[0], xm)), k)
	}
	return out, nil
}
