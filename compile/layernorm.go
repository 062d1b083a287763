package compile

import (
	"math"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels/vmath"
)

// LayerNormalization, and LayerNormGrad, which its gradient rule inserts.

func init() {
	// LayerNormalization (opset 17): (x, scale[, bias]) -> y[, mean, inv_std_dev]
	define(opDef{name: "LayerNormalization", arity: graph.OpInfo{MinIn: 2, MaxIn: 3, MinOut: 1, MaxOut: 3},
		infer: inferLayerNorm, kernel: kernelLayerNorm, grad: gradLayerNorm})
	// LayerNormGrad: (x, scale, dy) -> dx, dscale, dbias; attrs axis, epsilon (project operator)
	define(opDef{name: "LayerNormGrad", arity: graph.OpInfo{MinIn: 3, MaxIn: 3, MinOut: 3, MaxOut: 3}, infer: inferLayerNormGrad, kernel: kernelLayerNormGrad, prune: pruneLayerNormGrad})
	// LayerNormGradAdd: (x, scale, dy, r) -> dx + r; attrs axis, epsilon
	// (project operator, made by fuse-accumulate)
	define(opDef{name: "LayerNormGradAdd", arity: graph.OpInfo{MinIn: 4, MaxIn: 4, MinOut: 1, MaxOut: 1}, infer: inferSame, kernel: kernelLayerNormGrad})
}

// inferLayerNorm: y has x's shape; the optional Mean and InvStdDev outputs
// have x's shape with the normalized dims (from axis on) set to 1.
func inferLayerNorm(n *graph.Node) error {
	x := shapeOf(n.Inputs[0])
	setOut(n, 0, n.Inputs[0].DType, x)
	if len(n.Outputs) == 1 {
		return nil
	}
	axis, err := normAxis(n, n.Attrs.Int("axis", -1), len(x))
	if err != nil {
		return err
	}
	stats := append([]int{}, x...)
	for i := axis; i < len(stats); i++ {
		stats[i] = 1
	}
	for i := 1; i < len(n.Outputs); i++ {
		setOut(n, i, graph.Float32, stats)
	}
	return nil
}

// LayerNormalization normalizes over the dims from axis on; statistics in
// float64. The optional outputs are each row's mean and 1/sqrt(var + eps),
// the float32 values y was computed with.
func kernelLayerNorm(n *graph.Node) (Kernel, error) {
	shape := shapeOf(n.Inputs[0])
	axis, err := normAxis(n, n.Attrs.Int("axis", -1), len(shape))
	if err != nil {
		return nil, err
	}
	rows, d := graph.Numel(shape[:axis]), graph.Numel(shape[axis:])
	if s := shapeOf(n.Inputs[1]); graph.Numel(s) != d {
		return nil, nodeError(n, "scale shape %v does not match normalized size %d", s, d)
	}
	hasBias := n.In(2) != nil
	eps := float64(n.Attrs.Float("epsilon", 1e-5))
	var x, g, y, b, means, invs []float32
	body := func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
			mean, inv := rowStats(xr, eps)
			m, s := float32(mean), float32(inv)
			if means != nil {
				means[r] = m
			}
			if invs != nil {
				invs[r] = s
			}
			if hasBias {
				vmath.NormRow(yr, xr, g[:d], b[:d], m, s)
			} else {
				normRow(yr, xr, g, m, s)
			}
		}
	}
	return func(in, out []*graph.Tensor) {
		x, g, y = in[0].F, in[1].F, out[0].F
		if hasBias {
			b = in[2].F
		}
		if len(out) > 1 {
			means = out[1].F
		}
		if len(out) > 2 {
			invs = out[2].F
		}
		parallel(rows, max(1, (1<<13)/d), body)
	}, nil
}

// rowStats returns the mean of x and 1/sqrt(variance + eps), from sums
// accumulated in float64 in one pass (E[x^2] - mean^2 loses nothing that
// matters in float64 for float32 data) in a fixed order.
func rowStats(x []float32, eps float64) (mean, inv float64) {
	s, q := vmath.RowSums(x)
	n := float64(len(x))
	mean = s / n
	vr := max(q/n-mean*mean, 0)
	return mean, 1 / math.Sqrt(vr+eps)
}

// normRow sets y = (x - m) s g.
func normRow(y, x, g []float32, m, s float32) {
	y, g = y[:len(x)], g[:len(x)]
	for j, v := range x {
		y[j] = (v - m) * s * g[j]
	}
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
// LayerNormGradAdd computes dx the same way and adds its fourth input to
// each row while the row is in cache: the bits of an Add after it.
func kernelLayerNormGrad(n *graph.Node) (Kernel, error) {
	shape := shapeOf(n.Inputs[0])
	axis, _ := normAxis(n, n.Attrs.Int("axis", -1), len(shape))
	rows, d := graph.Numel(shape[:axis]), graph.Numel(shape[axis:])
	eps := float64(n.Attrs.Float("epsilon", 1e-5))
	accumulate := n.Op == "LayerNormGradAdd"
	params := !accumulate && n.Attrs.Int("param_grads", 1) != 0
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
	var x, sc, dy, dx, acc []float32
	// rowRange computes dx for rows [lo, hi), adding their parameter
	// gradients to ds and dbb when set.
	rowRange := func(lo, hi int, ds, dbb []float32) {
		for r := lo; r < hi; r++ {
			xr, gr, dr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			mean, inv := rowStats(xr, eps)
			m, s := float32(mean), float32(inv)
			mg, mgx := vmath.NormGradSums(xr, gr, sc[:d], m, s)
			vmath.NormGradRow(dr, xr, gr, sc[:d], m, s, float32(mg/float64(d)), float32(mgx/float64(d)))
			if acc != nil {
				vmath.Arith(vmath.Add, dr, dr, acc[r*d:(r+1)*d])
			}
			if ds != nil {
				lnGradParams(ds, dbb, xr, gr, m, s)
			}
		}
	}
	body := func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			ds, dbb := part[ch][:d], part[ch][d:]
			clear(part[ch])
			rowRange(ch*rows/chunks, (ch+1)*rows/chunks, ds, dbb)
		}
	}
	// Without parameter gradients the rows are independent: they are
	// split over every core, not into the chunks of the sums.
	rowsOnly := func(lo, hi int) { rowRange(lo, hi, nil, nil) }
	return func(in, out []*graph.Tensor) {
		x, sc, dy, dx = in[0].F, in[1].F, in[2].F, out[0].F
		if accumulate {
			acc = in[3].F
			parallel(rows, max(1, (1<<13)/d), rowsOnly)
			return
		}
		dsc, db := out[1].F, out[2].F
		if !params {
			parallel(rows, max(1, (1<<13)/d), rowsOnly)
			clear(dsc)
			clear(db)
			return
		}
		parallel(chunks, 1, body)
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

// pruneLayerNormGrad: when only dx is wanted (an input gradient), the
// kernel skips the scale and bias sums.
func pruneLayerNormGrad(n *graph.Node, live func(*graph.Value) bool) {
	if !live(n.Outputs[1]) && !live(n.Outputs[2]) {
		if n.Attrs == nil {
			n.Attrs = graph.Attrs{}
		}
		n.Attrs["param_grads"] = int64(0)
	}
}

// gradLayerNorm: y's gradient is LayerNormGrad's (dx, dscale, dbias). The
// statistics add to dx: mean = sum(x)/d gives gmean/d, and
// inv = (var + eps)^-1/2 gives -ginv inv^3 (x - mean)/d.
func gradLayerNorm(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, len(n.Inputs))
	var dx []*graph.Value
	if gy[0] != nil {
		node := b.g.AddNode("LayerNormGrad", "grad", []*graph.Value{n.Inputs[0], n.Inputs[1], gy[0]},
			graph.Attrs{"axis": n.Attrs.Int("axis", -1), "epsilon": n.Attrs.Float("epsilon", 1e-5)},
			"grad_ln_x", "grad_ln_scale", "grad_ln_bias")
		if err := defs["LayerNormGrad"].infer(node); err != nil {
			return nil, err
		}
		dx = append(dx, node.Outputs[0])
		out[1] = b.reshape(node.Outputs[1], inShape(n, 1))
		if len(n.Inputs) > 2 && n.Inputs[2] != nil {
			out[2] = b.reshape(node.Outputs[2], inShape(n, 2))
		}
	}
	x := inShape(n, 0)
	d := float32(graph.Numel(x) / max(graph.Numel(n.Outputs[len(n.Outputs)-1].StaticShape()), 1))
	if len(gy) > 1 && gy[1] != nil {
		dx = append(dx, b.op("Expand", nil, b.mul(gy[1], b.scalar(1/d)), b.ints(x...)))
	}
	if len(gy) > 2 && gy[2] != nil {
		inv := n.Outputs[2]
		k := b.mul(gy[2], b.mul(b.mul(inv, b.mul(inv, inv)), b.scalar(-1/d)))
		dx = append(dx, b.mul(k, b.sub(n.Inputs[0], n.Outputs[1])))
	}
	if len(dx) > 0 {
		out[0] = dx[0]
		for _, v := range dx[1:] {
			out[0] = b.op("Add", nil, out[0], v)
		}
	}
	return out, nil
}

// fuseAccumulate is the fuse-accumulate pass: an Add of a LayerNormGrad's
// dx and another value of its shape (the gradient of a residual stream,
// summed where the stream forks) becomes one LayerNormGradAdd, which adds
// as each row is computed instead of in a pass of its own over both. Only
// a LayerNormGrad whose parameter gradients nobody reads (dce has pruned
// them: an input gradient) and whose dx the Add alone reads is fused, so
// it runs after dce, and drops the LayerNormGrad left with no reader.
func fuseAccumulate(c *compilation) error {
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	uses := c.g.Consumers()
	fused := false
	for _, n := range c.g.Nodes {
		if n.Op != "Add" || len(n.Inputs) != 2 || n.Inputs[0] == nil || n.Inputs[1] == nil {
			continue
		}
		for i, y := range n.Inputs {
			r := n.Inputs[1-i]
			g := def(y, "LayerNormGrad")
			if g == nil || g.Attrs.Int("param_grads", 1) != 0 || len(uses[y]) != 1 || pinned[y] ||
				y.DType != graph.Float32 || r.DType != graph.Float32 ||
				!sameShape(shapeOf(y), shapeOf(r)) || !sameShape(shapeOf(y), n.Outputs[0].StaticShape()) {
				continue
			}
			n.Op = "LayerNormGradAdd"
			n.Inputs = []*graph.Value{g.Inputs[0], g.Inputs[1], g.Inputs[2], r}
			n.Attrs = graph.Attrs{"axis": g.Attrs.Int("axis", -1), "epsilon": g.Attrs.Float("epsilon", 1e-5)}
			fused = true
			break
		}
	}
	if !fused {
		return nil
	}
	return deadCode(c)
}
