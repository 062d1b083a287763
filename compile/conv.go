package compile

import (
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Conv (any number of spatial dims, groups, dilations) by im2col and one
// product per image and group, and ConvGradInput and ConvGradW, which its
// gradient rule inserts. Conv and ConvGradInput take the images a chunk at
// a time: the chunk's column matrices are built on all cores, then
// multiplied as one batch of products (one image's product is the same
// operations however the batch is split, so results do not depend on the
// number of cores).

func init() {
	define(opDef{name: "Conv", arity: ins(2, 3), infer: inferConv, kernel: kernelConv, grad: gradConv})
	// ConvGradInput: (w, dy) -> dx; Conv's attrs plus "shape" of x (project operator)
	define(opDef{name: "ConvGradInput", arity: ins(2, 2), infer: inferShapeAttr, kernel: kernelConvGradInput})
	// ConvGradW: (x, dy) -> dw; Conv's attrs plus "shape" of w (project operator)
	define(opDef{name: "ConvGradW", arity: ins(2, 2), infer: inferShapeAttr, kernel: kernelConvGradW})
}

// convPlan holds Conv's geometry (any number of spatial dims) and the im2col
// map: for each (input channel within a group, kernel offset) row and each
// output position, the input element it reads, or -1 for padding.
type convPlan struct {
	n, c, m, group int
	inSp, outSp    []int
	kSp            []int
	strides, dil   []int
	pads           []int   // begin pads of every spatial dim, then end pads
	col            []int32 // [cg*K][P] offsets within one (image, group)'s channel block
	ck, p          int     // rows and columns of the column matrix
	inImg          int     // elements per input image
}

func planConv(n *graph.Node) (*convPlan, error) {
	x, w := shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1])
	if len(x) < 3 || len(w) != len(x) {
		return nil, nodeError(n, "input %v and weight %v ranks do not fit", x, w)
	}
	pl := &convPlan{n: x[0], c: x[1], m: w[0], group: int(n.Attrs.Int("group", 1))}
	if pl.group <= 0 || pl.c%pl.group != 0 || pl.m%pl.group != 0 || w[1]*pl.group != pl.c {
		return nil, nodeError(n, "channels %d, weight %v and group %d do not fit", pl.c, w, pl.group)
	}
	pl.inSp, pl.kSp = x[2:], w[2:]
	if err := pl.geometry(n, w); err != nil {
		return nil, err
	}
	pl.columns()
	return pl, nil
}

// convAttr reads a per-spatial-dim integer attribute (def where absent).
func convAttr(n *graph.Node, name string, sp int, def int64) []int {
	v, ok := n.Attrs.Ints(name)
	out := make([]int, sp)
	for i := range out {
		out[i] = int(def)
		if ok && i < len(v) {
			out[i] = int(v[i])
		}
	}
	return out
}

// geometry reads strides, dilations, kernel_shape, pads and auto_pad and
// sets the output's spatial dims.
func (pl *convPlan) geometry(n *graph.Node, w []int) error {
	sp := len(pl.inSp)
	pl.strides, pl.dil = convAttr(n, "strides", sp, 1), convAttr(n, "dilations", sp, 1)
	for i := 0; i < sp; i++ {
		if pl.strides[i] < 1 || pl.dil[i] < 1 {
			return nodeError(n, "strides %v and dilations %v must be positive", pl.strides, pl.dil)
		}
		if pl.kSp[i] < 1 {
			return nodeError(n, "empty kernel %v", pl.kSp)
		}
	}
	if ks, ok := n.Attrs.Ints("kernel_shape"); ok {
		for i, k := range ks {
			if i >= sp || int(k) != pl.kSp[i] {
				return nodeError(n, "kernel_shape %v does not match weight %v", ks, w)
			}
		}
	}
	pl.pads = make([]int, 2*sp)
	if v, ok := n.Attrs.Ints("pads"); ok {
		if len(v) != 2*sp {
			return nodeError(n, "pads %v: want %d values", v, 2*sp)
		}
		for i := range v {
			pl.pads[i] = int(v[i])
		}
	}
	autoPad := n.Attrs.Str("auto_pad", "NOTSET")
	pl.outSp = make([]int, sp)
	for i := 0; i < sp; i++ {
		ek := (pl.kSp[i]-1)*pl.dil[i] + 1
		switch autoPad {
		case "NOTSET":
		case "VALID":
			pl.pads[i], pl.pads[i+sp] = 0, 0
		case "SAME_UPPER", "SAME_LOWER":
			out := (pl.inSp[i] + pl.strides[i] - 1) / pl.strides[i]
			total := max((out-1)*pl.strides[i]+ek-pl.inSp[i], 0)
			lo := total / 2
			if autoPad == "SAME_LOWER" {
				lo = total - total/2
			}
			pl.pads[i], pl.pads[i+sp] = lo, total-lo
		default:
			return nodeError(n, "auto_pad %q is not supported", autoPad)
		}
		o := (pl.inSp[i]+pl.pads[i]+pl.pads[i+sp]-ek)/pl.strides[i] + 1
		if o <= 0 {
			return nodeError(n, "kernel %v larger than padded input %v", pl.kSp, pl.inSp)
		}
		pl.outSp[i] = o
	}
	return nil
}

// columns builds the im2col map of one (image, group) channel block.
func (pl *convPlan) columns() {
	sp := len(pl.inSp)
	cg := pl.c / pl.group
	K := graph.Numel(pl.kSp)
	pl.ck, pl.p = cg*K, graph.Numel(pl.outSp)
	inPlane := graph.Numel(pl.inSp)
	pl.inImg = pl.c * inPlane
	inSt := stridesOf(pl.inSp)
	pl.col = make([]int32, pl.ck*pl.p)
	kIdx := make([]int, sp)
	for c := 0; c < cg; c++ {
		for kk := 0; kk < K; kk++ {
			// decode kernel offset
			r := kk
			for i := sp - 1; i >= 0; i-- {
				kIdx[i] = r % pl.kSp[i]
				r /= pl.kSp[i]
			}
			row := (c*K + kk) * pl.p
			for p := 0; p < pl.p; p++ {
				r := p
				off := c * inPlane
				for i := sp - 1; i >= 0; i-- {
					o := r % pl.outSp[i]
					r /= pl.outSp[i]
					pos := o*pl.strides[i] - pl.pads[i] + kIdx[i]*pl.dil[i]
					if pos < 0 || pos >= pl.inSp[i] {
						off = -1
						break
					}
					off += pos * inSt[i]
				}
				pl.col[row+p] = int32(off)
			}
		}
	}
}

// convChunkFloats bounds the column matrices of one chunk of images (a
// variable so that tests can make chunks of a few images).
var convChunkFloats = 1 << 21

// chunk is the number of images in a chunk.
func (pl *convPlan) chunk() int {
	return max(1, min(pl.n, convChunkFloats/max(pl.ck*pl.p, 1)))
}

// imageGrain is the number of images below which a loop over images of per
// elements each stays on one core.
func imageGrain(per int) int { return max(1, (1<<14)/max(per, 1)) }

// inBlock is where image img's channels of group g start in the input.
func (pl *convPlan) inBlock(img, g int) int {
	return img*pl.inImg + g*(pl.c/pl.group)*graph.Numel(pl.inSp)
}

// outBlock is where image img's output channels of group g start in the
// output (and in its gradient).
func (pl *convPlan) outBlock(img, g int) int {
	return (img*pl.m + g*(pl.m/pl.group)) * pl.p
}

// im2col fills the column matrix col ([ck, p]) from one input block xb
// through the map; padding reads as zero.
func (pl *convPlan) im2col(col, xb []float32) {
	for i, o := range pl.col {
		if o < 0 {
			col[i] = 0
		} else {
			col[i] = xb[o]
		}
	}
}

// col2im is im2col's adjoint: it adds the column matrix back into one
// input block dxb (padding positions are dropped).
func (pl *convPlan) col2im(dxb, col []float32) {
	for i, o := range pl.col {
		if o >= 0 {
			dxb[o] += col[i]
		}
	}
}

func inferConv(n *graph.Node) error {
	pl, err := planConv(n)
	if err != nil {
		return err
	}
	if b := n.In(2); b != nil && graph.Numel(shapeOf(b)) != pl.m {
		return nodeError(n, "bias has %v elements, want %d", shapeOf(b), pl.m)
	}
	setOut(n, 0, graph.Float32, append([]int{pl.n, pl.m}, pl.outSp...))
	return nil
}

func kernelConv(n *graph.Node) (Kernel, error) {
	pl, err := planConv(n)
	if err != nil {
		return nil, err
	}
	hasBias := n.In(2) != nil
	mg, cs, cb := pl.m/pl.group, pl.ck*pl.p, pl.chunk()
	col := make([]float32, cb*cs)
	var x, y, bias []float32
	var i0, g int
	build := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			pl.im2col(col[i*cs:], x[pl.inBlock(i0+i, g):])
		}
	}
	addBias := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			yb := y[pl.outBlock(i0+i, g):]
			for oc := 0; oc < mg; oc++ {
				bv := bias[g*mg+oc]
				row := yb[oc*pl.p : (oc+1)*pl.p]
				for j := range row {
					row[j] += bv
				}
			}
		}
	}
	return func(in, out []*graph.Tensor) {
		x, y, bias = in[0].F, out[0].F, nil
		if hasBias {
			bias = in[2].F
		}
		w := in[1].F
		for i0 = 0; i0 < pl.n; i0 += cb {
			cnt := min(cb, pl.n-i0)
			for g = 0; g < pl.group; g++ {
				parallel(cnt, imageGrain(cs), build)
				kernels.SgemmBatched(cnt, false, false, mg, pl.p, pl.ck, 1, w[g*mg*pl.ck:], pl.ck, 0,
					col, pl.p, cs, 0, y[pl.outBlock(i0, g):], pl.p, pl.m*pl.p)
				if bias != nil {
					parallel(cnt, imageGrain(mg*pl.p), addBias)
				}
			}
		}
	}, nil
}

// convForGrad rebuilds Conv's plan from a gradient node: the x shape comes
// from the input (ConvGradW) or the "shape" attribute (ConvGradInput).
func convForGrad(n *graph.Node, x, w []int) (*convPlan, error) {
	fake := &graph.Node{Op: "Conv", Name: n.Name, Attrs: n.Attrs, Inputs: []*graph.Value{
		{Name: "x", DType: graph.Float32, Shape: graph.StaticShape(x...)},
		{Name: "w", DType: graph.Float32, Shape: graph.StaticShape(w...)}}}
	return planConv(fake)
}

// ConvGradInput: col = W_g^T dY_g, then col2im adds it into dX.
func kernelConvGradInput(n *graph.Node) (Kernel, error) {
	x := n.Outputs[0].StaticShape()
	pl, err := convForGrad(n, x, shapeOf(n.Inputs[0]))
	if err != nil {
		return nil, err
	}
	mg, cs, cb := pl.m/pl.group, pl.ck*pl.p, pl.chunk()
	col := make([]float32, cb*cs)
	var dx []float32
	var i0, g int
	clearImages := func(lo, hi int) {
		clear(dx[(i0+lo)*pl.inImg : (i0+hi)*pl.inImg])
	}
	scatter := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			pl.col2im(dx[pl.inBlock(i0+i, g):], col[i*cs:(i+1)*cs])
		}
	}
	return func(in, out []*graph.Tensor) {
		w, dy := in[0].F, in[1].F
		dx = out[0].F
		for i0 = 0; i0 < pl.n; i0 += cb {
			cnt := min(cb, pl.n-i0)
			parallel(cnt, imageGrain(pl.inImg), clearImages)
			for g = 0; g < pl.group; g++ {
				kernels.SgemmBatched(cnt, true, false, pl.ck, pl.p, mg, 1, w[g*mg*pl.ck:], pl.ck, 0,
					dy[pl.outBlock(i0, g):], pl.p, pl.m*pl.p, 0, col, pl.p, cs)
				parallel(cnt, imageGrain(cs), scatter)
			}
		}
	}, nil
}

// ConvGradW: dW_g = sum over images of dY_g col^T, with col as the forward's.
func kernelConvGradW(n *graph.Node) (Kernel, error) {
	pl, err := convForGrad(n, shapeOf(n.Inputs[0]), n.Outputs[0].StaticShape())
	if err != nil {
		return nil, err
	}
	mg := pl.m / pl.group
	col := make([]float32, pl.ck*pl.p)
	return func(in, out []*graph.Tensor) {
		x, dy, dw := in[0].F, in[1].F, out[0].F
		for i := range dw {
			dw[i] = 0
		}
		for img := 0; img < pl.n; img++ {
			for g := 0; g < pl.group; g++ {
				pl.im2col(col, x[pl.inBlock(img, g):])
				dyb := dy[pl.outBlock(img, g):]
				Gemm(false, true, mg, pl.ck, pl.p, 1, dyb, pl.p, col, pl.p, 1, dw[g*mg*pl.ck:], pl.ck)
			}
		}
	}, nil
}

func convAttrs(n *graph.Node, shape []int) graph.Attrs {
	a := n.Attrs.Clone()
	a["shape"] = i64s(shape)
	return a
}

// conv: dX by the transposed convolution, dW by correlating X with dY, db by
// summing dY over batch and space.
func gradConv(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, 3)
	if need[0] {
		out[0] = b.op("ConvGradInput", convAttrs(n, n.Inputs[0].StaticShape()), n.Inputs[1], gy[0])
	}
	if need[1] {
		out[1] = b.op("ConvGradW", convAttrs(n, n.Inputs[1].StaticShape()), n.Inputs[0], gy[0])
	}
	if len(need) > 2 && need[2] {
		ys := gy[0].StaticShape()
		axes := []int{0}
		for i := 2; i < len(ys); i++ {
			axes = append(axes, i)
		}
		out[2] = b.op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, gy[0], b.ints(axes...))
	}
	return out, nil
}
