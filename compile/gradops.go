package compile

import (
	"math"

	"github.com/hyperat/hyperat/kernels/vmath"

	"github.com/hyperat/hyperat/graph"
)

// Kernels of the operators the gradient pass inserts.

func init() {
	register("SoftmaxGrad", func(n *graph.Node) error {
		setOut(n, 0, graph.Float32, shapeOf(n.Inputs[0]))
		return nil
	}, kernelSoftmaxGrad)
	register("GeluGrad", func(n *graph.Node) error {
		setOut(n, 0, graph.Float32, shapeOf(n.Inputs[0]))
		return nil
	}, kernelGeluGrad)
	register("LayerNormGrad", inferLayerNormGrad, kernelLayerNormGrad)
	register("IndexGrad", inferShapeAttr, kernelIndexGrad)
	register("GatherGrad", inferShapeAttr, kernelGatherGrad)
	register("ConvGradInput", inferShapeAttr, kernelConvGradInput)
	register("ConvGradW", inferShapeAttr, kernelConvGradW)
}

// inferShapeAttr: the output is float32 of attribute "shape".
func inferShapeAttr(n *graph.Node) error {
	s, _ := n.Attrs.Ints("shape")
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	setOut(n, 0, graph.Float32, out)
	return nil
}

// dx = y (dy - sum_j dy_j y_j) along the axis.
func kernelSoftmaxGrad(n *graph.Node) (Kernel, error) {
	shape := shapeOf(n.Inputs[0])
	axis, err := normAxis(n, n.Attrs.Int("axis", -1), len(shape))
	if err != nil {
		return nil, err
	}
	outer, d, inner := axisSplit(shape, axis)
	var y, dy, dx []float32
	if inner == 1 {
		// rows: the usual case (attention over the last axis)
		rows := func(lo, hi int) {
			vmath.SoftmaxGradRows(dx[lo*d:hi*d], y[lo*d:hi*d], dy[lo*d:hi*d], hi-lo, d)
		}
		return func(in, out []*graph.Tensor) {
			y, dy, dx = in[0].F, in[1].F, out[0].F
			parallel(outer, max(1, (1<<13)/d), rows)
		}, nil
	}
	body := func(lo, hi int) {
		for o := lo; o < hi; o++ {
			for k := 0; k < inner; k++ {
				base := o*d*inner + k
				var s float64
				for j := 0; j < d; j++ {
					s += float64(dy[base+j*inner]) * float64(y[base+j*inner])
				}
				for j := 0; j < d; j++ {
					i := base + j*inner
					dx[i] = float32(float64(y[i]) * (float64(dy[i]) - s))
				}
			}
		}
	}
	return func(in, out []*graph.Tensor) {
		y, dy, dx = in[0].F, in[1].F, out[0].F
		parallel(outer, max(1, (1<<13)/(d*inner)), body)
	}, nil
}

// geluGrad is d/dx [x Phi(x)] = Phi(x) + x phi(x) (or the tanh form's derivative).
func geluGrad(x float64, tanh bool) float64 {
	if tanh {
		c := math.Sqrt(2 / math.Pi)
		u := c * (x + 0.044715*x*x*x)
		t := math.Tanh(u)
		return 0.5*(1+t) + 0.5*x*(1-t*t)*c*(1+3*0.044715*x*x)
	}
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
}

func kernelGeluGrad(n *graph.Node) (Kernel, error) {
	if n.Attrs.Str("approximate", "none") == "tanh" {
		return func(in, out []*graph.Tensor) {
			x, dy, dx := in[0].F, in[1].F, out[0].F
			for i, v := range x {
				dx[i] = float32(float64(dy[i]) * geluGrad(float64(v), true))
			}
		}, nil
	}
	var x, dy, dx []float32
	body := func(lo, hi int) { vmath.GeluGrad(dx[lo:hi], x[lo:hi], dy[lo:hi]) }
	return func(in, out []*graph.Tensor) {
		x, dy, dx = in[0].F, in[1].F, out[0].F
		parallel(len(x), 1<<13, body)
	}, nil
}

func inferLayerNormGrad(n *graph.Node) error {
	setOut(n, 0, graph.Float32, shapeOf(n.Inputs[0]))
	x := shapeOf(n.Inputs[0])
	axis, err := normAxis(n, n.Attrs.Int("axis", -1), len(x))
	if err != nil {
		return err
	}
	d := []int{graph.Numel(x[axis:])}
	setOut(n, 1, graph.Float32, d)
	setOut(n, 2, graph.Float32, d)
	return nil
}

// With xh = (x - mean) * inv and g = dy * scale:
// dx = inv * (g - mean(g) - xh * mean(g * xh)); dscale = sum(dy * xh); dbias = sum(dy).
// Row order of the parameter sums is fixed, so results repeat bit for bit.
func kernelLayerNormGrad(n *graph.Node) (Kernel, error) {
	shape := shapeOf(n.Inputs[0])
	axis, _ := normAxis(n, n.Attrs.Int("axis", -1), len(shape))
	rows, d := graph.Numel(shape[:axis]), graph.Numel(shape[axis:])
	eps := float64(n.Attrs.Float("epsilon", 1e-5))
	params := n.Attrs.Int("param_grads", 1) != 0
	// Parameter gradients are summed per fixed chunk of rows, then the chunks
	// in order, so the result does not depend on how many cores ran.
	const chunks = 16
	var part [][]float32
	if params {
		part = make([][]float32, chunks)
		for i := range part {
			part[i] = make([]float32, 2*d) // dscale, dbias partial sums
		}
	}
	var x, sc, dy, dx []float32
	body := func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var ds, dbb []float32
			if params {
				ds, dbb = part[ch][:d], part[ch][d:]
				clear(part[ch])
			}
			for r := ch * rows / chunks; r < (ch+1)*rows/chunks; r++ {
				xr, gr, dr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], dx[r*d:(r+1)*d]
				mean, inv := rowStats(xr, eps)
				m, s := float32(mean), float32(inv)
				mg, mgx := vmath.NormGradSums(xr, gr, sc[:d], m, s)
				vmath.NormGradRow(dr, xr, gr, sc[:d], m, s, float32(mg/float64(d)), float32(mgx/float64(d)))
				if params {
					lnGradParams(ds, dbb, xr, gr, m, s)
				}
			}
		}
	}
	return func(in, out []*graph.Tensor) {
		x, sc, dy, dx = in[0].F, in[1].F, in[2].F, out[0].F
		parallel(chunks, 1, body)
		dsc, db := out[1].F, out[2].F
		if !params {
			clear(dsc)
			clear(db)
			return
		}
		for j := 0; j < d; j++ {
			var a, b float64
			for ch := 0; ch < chunks; ch++ {
				a += float64(part[ch][j])
				b += float64(part[ch][d+j])
			}
			dsc[j], db[j] = float32(a), float32(b)
		}
	}, nil
}

// lnGradParams adds dy xh to ds and dy to db.
func lnGradParams(ds, db, x, dy []float32, m, s float32) {
	ds, db, dy = ds[:len(x)], db[:len(x)], dy[:len(x)]
	for j, v := range x {
		ds[j] += dy[j] * ((v - m) * s)
		db[j] += dy[j]
	}
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
	m, _ := n.Attrs["map"].([]int32)
	return func(in, out []*graph.Tensor) {
		dx := out[0].F
		for i := range dx {
			dx[i] = 0
		}
		for i, j := range m {
			dx[j] += in[0].F[i]
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

// convForGrad rebuilds Conv's plan from a gradient node: the x shape comes
// from the input (ConvGradW) or the "shape" attribute (ConvGradInput).
func convForGrad(n *graph.Node, x, w []int) (*convPlan, error) {
	fake := &graph.Node{Op: "Conv", Name: n.Name, Attrs: n.Attrs, Inputs: []*graph.Value{
		{Name: "x", DType: graph.Float32, Shape: graph.StaticShape(x...)},
		{Name: "w", DType: graph.Float32, Shape: graph.StaticShape(w...)}}}
	return planConv(fake)
}

// ConvGradInput: col = W_g^T dY_g, then col2im scatter-adds into dX.
func kernelConvGradInput(n *graph.Node) (Kernel, error) {
	x := n.Outputs[0].StaticShape()
	pl, err := convForGrad(n, x, shapeOf(n.Inputs[0]))
	if err != nil {
		return nil, err
	}
	cg, mg := pl.c/pl.group, pl.m/pl.group
	inPlane := graph.Numel(pl.inSp)
	col := make([]float32, pl.ck*pl.p)
	return func(in, out []*graph.Tensor) {
		w, dy, dx := in[0].F, in[1].F, out[0].F
		for i := range dx {
			dx[i] = 0
		}
		for img := 0; img < pl.n; img++ {
			for g := 0; g < pl.group; g++ {
				dyb := dy[(img*pl.m+g*mg)*pl.p:]
				Gemm(true, false, pl.ck, pl.p, mg, 1, w[g*mg*pl.ck:], pl.ck, dyb, pl.p, 0, col, pl.p)
				dxb := dx[img*pl.inImg+g*cg*inPlane:]
				for i, o := range pl.col {
					if o >= 0 {
						dxb[o] += col[i]
					}
				}
			}
		}
	}, nil
}

// ConvGradW: dW_g = sum over images of dY_g col^T.
func kernelConvGradW(n *graph.Node) (Kernel, error) {
	pl, err := convForGrad(n, shapeOf(n.Inputs[0]), n.Outputs[0].StaticShape())
	if err != nil {
		return nil, err
	}
	cg, mg := pl.c/pl.group, pl.m/pl.group
	inPlane := graph.Numel(pl.inSp)
	col := make([]float32, pl.ck*pl.p)
	return func(in, out []*graph.Tensor) {
		x, dy, dw := in[0].F, in[1].F, out[0].F
		for i := range dw {
			dw[i] = 0
		}
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
				dyb := dy[(img*pl.m+g*mg)*pl.p:]
				Gemm(false, true, mg, pl.ck, pl.p, 1, dyb, pl.p, col, pl.p, 1, dw[g*mg*pl.ck:], pl.ck)
			}
		}
	}, nil
}
