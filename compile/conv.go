package compile

import (
	"github.com/hyperat/hyperat/graph"
)

// convPlan holds Conv's geometry (any number of spatial dims) and the im2col
// map: for each (input channel within a group, kernel offset) row and each
// output position, the input element it reads, or -1 for padding.
type convPlan struct {
	n, c, m, group int
	inSp, outSp    []int
	kSp            []int
	col            []int32 // [cg*K][P] offsets within one (image, group)'s channel block
	ck, p          int     // rows and columns of the column matrix
	inImg          int     // elements per input image
}

func planConv(n *graph.Node) (*convPlan, error) {
	x, w := shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1])
	if len(x) < 3 || len(w) != len(x) {
		return nil, nodeError(n, "input %v and weight %v ranks do not fit", x, w)
	}
	sp := len(x) - 2
	pl := &convPlan{n: x[0], c: x[1], m: w[0], group: int(n.Attrs.Int("group", 1))}
	if pl.group <= 0 || pl.c%pl.group != 0 || pl.m%pl.group != 0 || w[1]*pl.group != pl.c {
		return nil, nodeError(n, "channels %d, weight %v and group %d do not fit", pl.c, w, pl.group)
	}
	pl.inSp, pl.kSp = x[2:], w[2:]
	get := func(name string, def int64) []int {
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
	strides, dil := get("strides", 1), get("dilations", 1)
	for i := 0; i < sp; i++ {
		if strides[i] < 1 || dil[i] < 1 {
			return nil, nodeError(n, "strides %v and dilations %v must be positive", strides, dil)
		}
		if pl.kSp[i] < 1 {
			return nil, nodeError(n, "empty kernel %v", pl.kSp)
		}
	}
	if ks, ok := n.Attrs.Ints("kernel_shape"); ok {
		for i, k := range ks {
			if i >= sp || int(k) != pl.kSp[i] {
				return nil, nodeError(n, "kernel_shape %v does not match weight %v", ks, w)
			}
		}
	}
	padsRaw := make([]int, 2*sp)
	if v, ok := n.Attrs.Ints("pads"); ok {
		if len(v) != 2*sp {
			return nil, nodeError(n, "pads %v: want %d values", v, 2*sp)
		}
		for i := range v {
			padsRaw[i] = int(v[i])
		}
	}
	autoPad := n.Attrs.Str("auto_pad", "NOTSET")
	pl.outSp = make([]int, sp)
	for i := 0; i < sp; i++ {
		ek := (pl.kSp[i]-1)*dil[i] + 1
		switch autoPad {
		case "NOTSET":
		case "VALID":
			padsRaw[i], padsRaw[i+sp] = 0, 0
		case "SAME_UPPER", "SAME_LOWER":
			out := (pl.inSp[i] + strides[i] - 1) / strides[i]
			total := max((out-1)*strides[i]+ek-pl.inSp[i], 0)
			lo := total / 2
			if autoPad == "SAME_LOWER" {
				lo = total - total/2
			}
			padsRaw[i], padsRaw[i+sp] = lo, total-lo
		default:
			return nil, nodeError(n, "auto_pad %q is not supported", autoPad)
		}
		o := (pl.inSp[i]+padsRaw[i]+padsRaw[i+sp]-ek)/strides[i] + 1
		if o <= 0 {
			return nil, nodeError(n, "kernel %v larger than padded input %v", pl.kSp, pl.inSp)
		}
		pl.outSp[i] = o
	}
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
					pos := o*strides[i] - padsRaw[i] + kIdx[i]*dil[i]
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
	return pl, nil
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
	cg, mg := pl.c/pl.group, pl.m/pl.group
	inPlane := graph.Numel(pl.inSp)
	col := make([]float32, pl.ck*pl.p)
	return func(in, out []*graph.Tensor) {
		x, w, y := in[0].F, in[1].F, out[0].F
		for img := 0; img < pl.n; img++ {
			for g := 0; g < pl.group; g++ {
				xb := x[img*pl.inImg+g*cg*inPlane:]
				for i, o := range pl.col {
					if o < 0 {
						col[i] = 0
					} else {
						col[i] = xb[o]
					}
				}
				yb := y[(img*pl.m+g*mg)*pl.p:]
				Gemm(false, false, mg, pl.p, pl.ck, 1, w[g*mg*pl.ck:], pl.ck, col, pl.p, 0, yb, pl.p)
				if hasBias {
					b := in[2].F
					for oc := 0; oc < mg; oc++ {
						bv := b[g*mg+oc]
						row := yb[oc*pl.p : (oc+1)*pl.p]
						for j := range row {
							row[j] += bv
						}
					}
				}
			}
		}
	}, nil
}
