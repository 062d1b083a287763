package compile

import (
	"math"
	"slices"

	"github.com/hyperat/hyperat/graph"
)

// ReduceSum, ReduceMean, ReduceMax and ReduceL2 over constant axes.

func init() {
	define(opDef{name: "ReduceSum", arity: ins(1, 2), infer: inferReduce, kernel: kernelReduce, grad: gradReduce})
	define(opDef{name: "ReduceMean", arity: ins(1, 2), infer: inferReduce, kernel: kernelReduce, grad: gradReduce})
	define(opDef{name: "ReduceMax", arity: ins(1, 2), infer: inferReduce, kernel: kernelReduce, grad: gradReduceMax})
	define(opDef{name: "ReduceL2", arity: ins(1, 2), infer: inferReduce, kernel: kernelReduce, grad: gradReduceL2})
}

// reduceAxes resolves the axes input: empty means all axes, unless
// noop_with_empty_axes, which makes the op the identity.
func reduceAxes(n *graph.Node) ([]bool, error) {
	shape := shapeOf(n.Inputs[0])
	axes, _, err := constInts(n, 1)
	if err != nil {
		return nil, err
	}
	red := make([]bool, len(shape))
	if len(axes) == 0 {
		if n.Attrs.Int("noop_with_empty_axes", 0) == 1 {
			return red, nil
		}
		for i := range red {
			red[i] = true
		}
	}
	for _, a := range axes {
		ax, err := normAxis(n, a, len(shape))
		if err != nil {
			return nil, err
		}
		red[ax] = true
	}
	return red, nil
}

func inferReduce(n *graph.Node) error {
	shape := shapeOf(n.Inputs[0])
	red, err := reduceAxes(n)
	if err != nil {
		return err
	}
	keep := n.Attrs.Int("keepdims", 1) == 1
	var out []int
	for i, d := range shape {
		switch {
		case !red[i]:
			out = append(out, d)
		case keep:
			out = append(out, 1)
		}
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

// kernelReduce accumulates in float64 (int64 for integers) in input order.
// ReduceL2 sums squares and takes the square root at the end; on integers
// the root is truncated, as the spec's reference casts it back to the type.
func kernelReduce(n *graph.Node) (Kernel, error) {
	shape := shapeOf(n.Inputs[0])
	red, err := reduceAxes(n)
	if err != nil {
		return nil, err
	}
	// map each input element to its output element
	ost := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		if !red[i] {
			ost[i] = acc
			acc *= shape[i]
		}
	}
	m := indexMap(shape, ost, 0)
	nOut := acc
	count := float64(graph.Numel(shape) / max(nOut, 1))
	op := n.Op
	if op == "ReduceL2" && !slices.Contains(red, true) {
		op = "ReduceSum" // noop_with_empty_axes: the identity, not |x|
	}
	dt := n.Inputs[0].DType
	if dt == graph.Float32 {
		if k := splitReduce(shape, red, op, count); k != nil {
			return k, nil
		}
	}
	sums := make([]float64, nOut)
	return func(in, out []*graph.Tensor) {
		switch dt {
		case graph.Float32:
			clear(sums)
			if op == "ReduceMax" {
				for i := range sums {
					sums[i] = math.Inf(-1)
				}
			}
			for i, o := range m {
				v := float64(in[0].F[i])
				switch op {
				case "ReduceMax":
					if v > sums[o] || v != v {
						sums[o] = v
					}
				case "ReduceL2":
					sums[o] += v * v
				default:
					sums[o] += v
				}
			}
			for i, s := range sums {
				switch op {
				case "ReduceMean":
					s /= count
				case "ReduceL2":
					s = math.Sqrt(s)
				}
				out[0].F[i] = float32(s)
			}
		case graph.Int64:
			for i := range out[0].I {
				out[0].I[i] = 0
				if op == "ReduceMax" {
					out[0].I[i] = math.MinInt64
				}
			}
			for i, o := range m {
				v := in[0].I[i]
				switch op {
				case "ReduceMax":
					out[0].I[o] = max(out[0].I[o], v)
				case "ReduceL2":
					out[0].I[o] += v * v
				default:
					out[0].I[o] += v
				}
			}
			for i, s := range out[0].I {
				switch op {
				case "ReduceMean":
					out[0].I[i] = s / int64(count)
				case "ReduceL2":
					out[0].I[i] = int64(math.Sqrt(float64(s)))
				}
			}
		}
	}, nil
}

// splitReduce is the kernel of a float reduction over the leading axes (a
// bias gradient: each output sums a column) or the trailing axes (each
// output sums a row), split by its outputs over all cores: every output
// still sums its inputs one by one in input order, in float64, as
// kernelReduce does, so the result is the same bits on any number of
// cores. Other reductions get nil (kernelReduce runs them on one core).
func splitReduce(shape []int, red []bool, op string, count float64) Kernel {
	// Axes of size 1 change nothing; the others must be all reduced then
	// all kept (columns), or all kept then all reduced (rows).
	var kinds []bool
	for i, d := range shape {
		if d != 1 && (len(kinds) == 0 || kinds[len(kinds)-1] != red[i]) {
			kinds = append(kinds, red[i])
		}
	}
	if len(kinds) != 2 {
		return nil
	}
	columns := kinds[0]
	nIn := graph.Numel(shape)
	if nIn == 0 {
		return nil
	}
	nOut := 1
	for i, d := range shape {
		if !red[i] {
			nOut *= d
		}
	}
	per := nIn / nOut // inputs summed into each output
	start := 0.0
	if op == "ReduceMax" {
		start = math.Inf(-1)
	}
	var x, y []float32
	var sums []float64
	body := func(lo, hi int) {
		s := sums[lo:hi]
		for i := range s {
			s[i] = start
		}
		if columns { // output o sums inputs o, o+nOut, o+2nOut, ...
			for r := 0; r < per; r++ {
				row := x[r*nOut+lo : r*nOut+hi]
				for j, v := range row {
					s[j] = accumulate(op, s[j], float64(v))
				}
			}
		} else { // output o sums inputs o*per to o*per+per-1
			for o := lo; o < hi; o++ {
				for _, v := range x[o*per : (o+1)*per] {
					s[o-lo] = accumulate(op, s[o-lo], float64(v))
				}
			}
		}
		for o := lo; o < hi; o++ {
			v := s[o-lo]
			switch op {
			case "ReduceMean":
				v /= count
			case "ReduceL2":
				v = math.Sqrt(v)
			}
			y[o] = float32(v)
		}
	}
	sums = make([]float64, nOut)
	grain := max(1, (1<<14)/per)
	return func(in, out []*graph.Tensor) {
		x, y = in[0].F, out[0].F
		parallel(nOut, grain, body)
	}
}

// accumulate adds v to the running sum s of a reduction, as kernelReduce
// does.
func accumulate(op string, s, v float64) float64 {
	switch op {
	case "ReduceMax":
		if v > s || v != v {
			return v
		}
		return s
	case "ReduceL2":
		return s + v*v
	default:
		return s + v
	}
}

// keepDims reshapes a reduced value to the reduction's keepdims shape.
func keepDims(b *builder, n *graph.Node, v *graph.Value) *graph.Value {
	x := n.Inputs[0].StaticShape()
	red, _ := reduceAxes(n)
	shape := make([]int, len(x))
	for i, d := range x {
		shape[i] = d
		if red[i] {
			shape[i] = 1
		}
	}
	return b.reshape(v, shape)
}

// sum/mean: the gradient is broadcast back over the reduced axes (divided by
// their size for the mean).
func gradReduce(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	x := n.Inputs[0].StaticShape()
	g := keepDims(b, n, gy[0])
	if n.Op == "ReduceMean" {
		cnt := graph.Numel(x) / max(graph.Numel(n.Outputs[0].StaticShape()), 1)
		g = b.mul(g, b.scalar(1/float32(cnt)))
	}
	return []*graph.Value{b.op("Expand", nil, g, b.ints(x...))}, nil
}

// max: the gradient goes to the elements equal to the maximum
func gradReduceMax(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	x := n.Inputs[0]
	ymax, g := keepDims(b, n, n.Outputs[0]), keepDims(b, n, gy[0])
	mask := b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, b.op("Equal", nil, x, ymax))
	return []*graph.Value{b.mul(mask, g)}, nil
}

// L2: dx = x g / y, and 0 where y is 0 (x is all zeros there; the norm's
// subgradient PyTorch takes too), so a zero vector gives no NaN; with
// noop_with_empty_axes and no axes the op is the identity.
func gradReduceL2(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	x := n.Inputs[0]
	if red, _ := reduceAxes(n); !slices.Contains(red, true) {
		return []*graph.Value{gy[0]}, nil
	}
	y, g := keepDims(b, n, n.Outputs[0]), keepDims(b, n, gy[0])
	safe := b.op("Where", nil, b.op("Equal", nil, y, b.scalar(0)), b.scalar(1), y)
	return []*graph.Value{b.mul(x, b.div(g, safe))}, nil
}
