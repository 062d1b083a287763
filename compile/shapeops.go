package compile

import (
	"math"

	"github.com/hyperat/hyperat/graph"
)

// Operators that compute shapes or give their input another shape.

func init() {
	define(opDef{name: "Shape", arity: ins(1, 1), infer: inferShape}) // the result is a constant once shapes are static
	define(opDef{name: "Size", arity: ins(1, 1), infer: inferSize})
	define(opDef{name: "Reshape", arity: ins(2, 2), infer: inferReshape, kernel: kernelCopy, grad: gradReshape, alias: true})
	define(opDef{name: "Flatten", arity: ins(1, 1), infer: inferFlatten, kernel: kernelCopy, grad: gradReshape, alias: true})
	define(opDef{name: "Squeeze", arity: ins(1, 2), infer: inferSqueeze, kernel: kernelCopy, grad: gradReshape, alias: true})
	define(opDef{name: "Unsqueeze", arity: ins(2, 2), infer: inferUnsqueeze, kernel: kernelCopy, grad: gradReshape, alias: true})
	define(opDef{name: "ConstantOfShape", arity: ins(1, 1), infer: inferConstantOfShape, kernel: kernelConstantOfShape})
	define(opDef{name: "Range", arity: ins(3, 3), infer: inferRange, kernel: kernelRange})
}

// Shape (opset 15): dims[start:end] with clamped, possibly negative bounds. The
// result is always a constant once shapes are static.
func inferShape(n *graph.Node) error {
	s := shapeOf(n.Inputs[0])
	r := int64(len(s))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start := clamp(n.Attrs.Int("start", 0))
	end := r
	if n.Attrs.Has("end") {
		end = clamp(n.Attrs.Int("end", r))
	}
	dims := []int64{}
	if start < end {
		dims = i64s(s[start:end])
	}
	setOut(n, 0, graph.Int64, []int{len(dims)})
	n.Outputs[0].Const = graph.I64([]int{len(dims)}, dims)
	return nil
}

func inferSize(n *graph.Node) error {
	setOut(n, 0, graph.Int64, nil)
	n.Outputs[0].Const = graph.I64(nil, []int64{int64(graph.Numel(shapeOf(n.Inputs[0])))})
	return nil
}

func kernelCopy(n *graph.Node) (Kernel, error) {
	return func(in, out []*graph.Tensor) { copyData(out[0], in[0]) }, nil
}

// Reshape: 0 copies the input dim (unless allowzero), -1 is inferred.
func inferReshape(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	spec, _, err := constInts(n, 1)
	if err != nil {
		return err
	}
	allowzero := n.Attrs.Int("allowzero", 0) == 1
	out := make([]int, len(spec))
	infer, known := -1, 1
	for i, d := range spec {
		switch {
		case d == -1:
			if infer >= 0 {
				return nodeError(n, "more than one -1 in shape %v", spec)
			}
			infer = i
			continue
		case d == 0 && !allowzero:
			if i >= len(in) {
				return nodeError(n, "shape %v copies dim %d of a rank-%d input", spec, i, len(in))
			}
			out[i] = in[i]
		case d < 0:
			return nodeError(n, "invalid dim %d in shape %v", d, spec)
		default:
			out[i] = int(d)
		}
		known *= out[i]
	}
	total := graph.Numel(in)
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nodeError(n, "cannot reshape %v to %v", in, spec)
		}
		out[infer] = total / known
	}
	if graph.Numel(out) != total {
		return nodeError(n, "cannot reshape %v (%d elements) to %v", in, total, out)
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

func inferFlatten(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	axis := n.Attrs.Int("axis", 1)
	if axis < 0 {
		axis += int64(len(in))
	}
	if axis < 0 || axis > int64(len(in)) {
		return nodeError(n, "axis %d out of range for rank %d", axis, len(in))
	}
	setOut(n, 0, n.Inputs[0].DType, []int{graph.Numel(in[:axis]), graph.Numel(in[axis:])})
	return nil
}

func inferSqueeze(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	axes, ok, err := constInts(n, 1)
	if err != nil {
		return err
	}
	drop := map[int]bool{}
	if !ok {
		for i, d := range in {
			if d == 1 {
				drop[i] = true
			}
		}
	}
	for _, a := range axes {
		ax, err := normAxis(n, a, len(in))
		if err != nil {
			return err
		}
		if in[ax] != 1 {
			return nodeError(n, "cannot squeeze axis %d of size %d", ax, in[ax])
		}
		drop[ax] = true
	}
	var out []int
	for i, d := range in {
		if !drop[i] {
			out = append(out, d)
		}
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

func inferUnsqueeze(n *graph.Node) error {
	in := shapeOf(n.Inputs[0])
	axes, _, err := constInts(n, 1)
	if err != nil {
		return err
	}
	rank := len(in) + len(axes)
	ins := map[int]bool{}
	for _, a := range axes {
		ax, err := normAxis(n, a, rank)
		if err != nil {
			return err
		}
		if ins[ax] {
			return nodeError(n, "axis %d repeated", ax)
		}
		ins[ax] = true
	}
	out := make([]int, 0, rank)
	j := 0
	for i := 0; i < rank; i++ {
		if ins[i] {
			out = append(out, 1)
		} else {
			out = append(out, in[j])
			j++
		}
	}
	setOut(n, 0, n.Inputs[0].DType, out)
	return nil
}

func inferConstantOfShape(n *graph.Node) error {
	spec, _, err := constInts(n, 0)
	if err != nil {
		return err
	}
	out := make([]int, len(spec))
	for i, d := range spec {
		if d < 0 {
			return nodeError(n, "negative dim %d", d)
		}
		out[i] = int(d)
	}
	val, _ := n.Attrs["value"].(*graph.Tensor)
	setOut(n, 0, val.DType, out)
	return nil
}

func kernelConstantOfShape(n *graph.Node) (Kernel, error) {
	val := n.Attrs["value"].(*graph.Tensor)
	return func(in, out []*graph.Tensor) {
		switch val.DType {
		case graph.Float32:
			for i := range out[0].F {
				out[0].F[i] = val.F[0]
			}
		case graph.Int64:
			for i := range out[0].I {
				out[0].I[i] = val.I[0]
			}
		case graph.Bool:
			for i := range out[0].B {
				out[0].B[i] = val.B[0]
			}
		}
	}, nil
}

// Range: ceil((limit - start) / delta) elements, at least zero.
func inferRange(n *graph.Node) error {
	for i := 0; i < 3; i++ {
		if !n.Inputs[i].IsConst() {
			return nodeError(n, "inputs must be known at compile time")
		}
	}
	dt := n.Inputs[0].DType
	var cnt int
	if dt == graph.Float32 {
		s, l, d := n.Inputs[0].Const.F[0], n.Inputs[1].Const.F[0], n.Inputs[2].Const.F[0]
		cnt = int(math.Max(math.Ceil(float64((l-s)/d)), 0))
	} else {
		s, l, d := n.Inputs[0].Const.I[0], n.Inputs[1].Const.I[0], n.Inputs[2].Const.I[0]
		if d == 0 {
			return nodeError(n, "delta is zero")
		}
		cnt = int(math.Max(math.Ceil(float64(l-s)/float64(d)), 0))
	}
	setOut(n, 0, dt, []int{cnt})
	return nil
}

func kernelRange(n *graph.Node) (Kernel, error) {
	return func(in, out []*graph.Tensor) {
		if in[0].DType == graph.Float32 {
			for i := range out[0].F {
				out[0].F[i] = in[0].F[0] + float32(i)*in[2].F[0]
			}
			return
		}
		for i := range out[0].I {
			out[0].I[i] = in[0].I[0] + int64(i)*in[2].I[0]
		}
	}, nil
}

// pure reshapes: the gradient takes the input's shape
func gradReshape(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.reshape(gy[0], n.Inputs[0].StaticShape())}, nil
}
