package compile

import (
	"fmt"
	"math"

	"github.com/hyperat/hyperat/graph"
)

// broadcastShapes applies numpy's multidirectional broadcasting.
func broadcastShapes(shapes ...[]int) ([]int, error) {
	rank := 0
	for _, s := range shapes {
		rank = max(rank, len(s))
	}
	out := make([]int, rank)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		off := rank - len(s)
		for i, d := range s {
			o := out[off+i]
			switch {
			case o == d || d == 1:
			case o == 1:
				out[off+i] = d
			default:
				return nil, fmt.Errorf("shapes %v cannot be broadcast together", shapes)
			}
		}
	}
	return out, nil
}

// bcast is a precomputed broadcast iteration: the output is walked row by row
// (a row is the last dimension); rowOff[i][r] is where input i's row r starts and
// step[i] is 1, or 0 when input i is broadcast along the last dimension.
type bcast struct {
	numel, inner, rows int
	rowOff             [][]int
	step               []int
	flat               []bool // input has the output's shape: plain flat loop
}

func newBcast(out []int, ins ...[]int) *bcast {
	b := &bcast{numel: graph.Numel(out)}
	rank := len(out)
	b.inner = 1
	if rank > 0 {
		b.inner = out[rank-1]
	}
	if b.inner > 0 {
		b.rows = b.numel / b.inner
	}
	for _, s := range ins {
		str := make([]int, rank)
		ss := stridesOf(s)
		off := rank - len(s)
		for i, d := range s {
			if d != 1 {
				str[off+i] = ss[i]
			}
		}
		step := 0
		if rank > 0 {
			step = str[rank-1]
		}
		b.step = append(b.step, step)
		b.flat = append(b.flat, sameShape(s, out))
		offs := make([]int, b.rows)
		idx := make([]int, max(rank-1, 0))
		for r := 0; r < b.rows; r++ {
			o := 0
			for k, v := range idx {
				o += v * str[k]
			}
			offs[r] = o
			for k := len(idx) - 1; k >= 0; k-- {
				idx[k]++
				if idx[k] < out[k] {
					break
				}
				idx[k] = 0
			}
		}
		b.rowOff = append(b.rowOff, offs)
	}
	return b
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// binary builds a broadcasting kernel from a scalar function.
func binary[T, U any](b *bcast, get func(*graph.Tensor) []T, put func(*graph.Tensor) []U, f func(x, y T) U) Kernel {
	return func(in, out []*graph.Tensor) {
		x, y, z := get(in[0]), get(in[1]), put(out[0])
		if b.flat[0] && b.flat[1] {
			for i := range z[:b.numel] {
				z[i] = f(x[i], y[i])
			}
			return
		}
		sx, sy := b.step[0], b.step[1]
		for r := 0; r < b.rows; r++ {
			ox, oy := b.rowOff[0][r], b.rowOff[1][r]
			zr := z[r*b.inner : (r+1)*b.inner]
			for j := range zr {
				zr[j] = f(x[ox+j*sx], y[oy+j*sy])
			}
		}
	}
}

func fs(t *graph.Tensor) []float32 { return t.F }
func is(t *graph.Tensor) []int64   { return t.I }
func bs(t *graph.Tensor) []bool    { return t.B }

// binOp is the scalar function of a broadcasting binary operator for each
// input dtype it accepts; comparisons and logic (cmp) give bools. Add, Sub,
// Mul and Div (vec) run float32 through the row loops of binfast.go instead.
type binOp struct {
	vec   bool
	arith arith
	f     func(x, y float32) float32
	i     func(x, y int64) int64
	cmp   bool
	fc    func(x, y float32) bool
	ic    func(x, y int64) bool
	bb    func(x, y bool) bool
}

// arithmetic is the binOp of Add, Sub, Mul and Div: vectorized float32 rows,
// i for int64.
func arithmetic(o arith, i func(x, y int64) int64) binOp { return binOp{vec: true, arith: o, i: i} }

func compare(fc func(x, y float32) bool, ic func(x, y int64) bool, bb func(x, y bool) bool) binOp {
	return binOp{cmp: true, fc: fc, ic: ic, bb: bb}
}

func init() {
	define(opDef{name: "Add", arity: ins(2, 2), infer: inferBinary, grad: gradAdd,
		kernel: arithmetic(opAdd, func(x, y int64) int64 { return x + y }).kernel})
	define(opDef{name: "Sub", arity: ins(2, 2), infer: inferBinary, grad: gradSub,
		kernel: arithmetic(opSub, func(x, y int64) int64 { return x - y }).kernel})
	define(opDef{name: "Mul", arity: ins(2, 2), infer: inferBinary, grad: gradMul,
		kernel: arithmetic(opMul, func(x, y int64) int64 { return x * y }).kernel})
	define(opDef{name: "Div", arity: ins(2, 2), infer: inferBinary, grad: gradDiv,
		kernel: arithmetic(opDiv, func(x, y int64) int64 {
			if y == 0 {
				return 0
			}
			return x / y
		}).kernel})
	define(opDef{name: "Pow", arity: ins(2, 2), infer: inferPow, grad: gradPow, kernel: kernelPow})
	define(opDef{name: "Mod", arity: ins(2, 2), infer: inferBinary, kernel: kernelMod, grad: gradMod})
	define(opDef{name: "Max", arity: ins(1, -1), infer: inferBinary, kernel: kernelMinMax, grad: gradMinMax})
	define(opDef{name: "Min", arity: ins(1, -1), infer: inferBinary, kernel: kernelMinMax, grad: gradMinMax})
	define(opDef{name: "Where", arity: ins(3, 3), infer: inferWhere, kernel: kernelWhere, grad: gradWhere})

	// bool results: no gradient
	define(opDef{name: "Equal", arity: ins(2, 2), infer: inferCompare, kernel: compare(func(x, y float32) bool { return x == y },
		func(x, y int64) bool { return x == y }, func(x, y bool) bool { return x == y }).kernel})
	define(opDef{name: "Less", arity: ins(2, 2), infer: inferCompare, kernel: compare(func(x, y float32) bool { return x < y },
		func(x, y int64) bool { return x < y }, nil).kernel})
	define(opDef{name: "Greater", arity: ins(2, 2), infer: inferCompare, kernel: compare(func(x, y float32) bool { return x > y },
		func(x, y int64) bool { return x > y }, nil).kernel})
	define(opDef{name: "LessOrEqual", arity: ins(2, 2), infer: inferCompare, kernel: compare(func(x, y float32) bool { return x <= y },
		func(x, y int64) bool { return x <= y }, nil).kernel})
	define(opDef{name: "GreaterOrEqual", arity: ins(2, 2), infer: inferCompare, kernel: compare(func(x, y float32) bool { return x >= y },
		func(x, y int64) bool { return x >= y }, nil).kernel})
	define(opDef{name: "And", arity: ins(2, 2), infer: inferCompare, kernel: compare(nil, nil, func(x, y bool) bool { return x && y }).kernel})
	define(opDef{name: "Or", arity: ins(2, 2), infer: inferCompare, kernel: compare(nil, nil, func(x, y bool) bool { return x || y }).kernel})
}

// inferBinary: inputs of one dtype broadcast together; the result has
// their dtype.
func inferBinary(n *graph.Node) error { return inferBroadcast(n, false) }

// inferCompare is inferBinary with a bool result.
func inferCompare(n *graph.Node) error { return inferBroadcast(n, true) }

func inferBroadcast(n *graph.Node, toBool bool) error {
	shapes := make([][]int, len(n.Inputs))
	dt := n.Inputs[0].DType
	for i, in := range n.Inputs {
		shapes[i] = shapeOf(in)
		if in.DType != dt {
			return nodeError(n, "input types differ (%s and %s)", dt, in.DType)
		}
	}
	out, err := broadcastShapes(shapes...)
	if err != nil {
		return nodeError(n, "%v", err)
	}
	if toBool {
		dt = graph.Bool
	}
	setOut(n, 0, dt, out)
	return nil
}

// kernel builds the node's broadcasting kernel for its input dtype.
func (op binOp) kernel(n *graph.Node) (Kernel, error) {
	out := n.Outputs[0].StaticShape()
	b := newBcast(out, shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1]))
	dt := n.Inputs[0].DType
	if op.vec && dt == graph.Float32 {
		return arithKernel(op.arith, b), nil
	}
	switch {
	case !op.cmp && dt == graph.Float32 && op.f != nil:
		return binary(b, fs, fs, op.f), nil
	case !op.cmp && dt == graph.Int64 && op.i != nil:
		return binary(b, is, is, op.i), nil
	case op.cmp && dt == graph.Float32 && op.fc != nil:
		return binary(b, fs, bs, op.fc), nil
	case op.cmp && dt == graph.Int64 && op.ic != nil:
		return binary(b, is, bs, op.ic), nil
	case op.cmp && dt == graph.Bool && op.bb != nil:
		return binary(b, bs, bs, op.bb), nil
	}
	return nil, nodeError(n, "not supported for %s inputs", dt)
}

// Pow (opset 12+) takes a base and an exponent of different types; the
// result has the base's. Each value is math.Pow in float64, rounded to
// float32 or truncated to an integer as numpy's astype does.
func inferPow(n *graph.Node) error {
	base, exp := n.Inputs[0], n.Inputs[1]
	for _, v := range []*graph.Value{base, exp} {
		if v.DType != graph.Float32 && v.DType != graph.Int64 {
			return nodeError(n, "input %s is %s; Pow takes numbers", v.Name, v.DType)
		}
	}
	out, err := broadcastShapes(shapeOf(base), shapeOf(exp))
	if err != nil {
		return nodeError(n, "%v", err)
	}
	setOut(n, 0, base.DType, out)
	return nil
}

func kernelPow(n *graph.Node) (Kernel, error) {
	b := newBcast(n.Outputs[0].StaticShape(), shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1]))
	pow := math.Pow
	switch [2]graph.DType{n.Inputs[0].DType, n.Inputs[1].DType} {
	case [2]graph.DType{graph.Float32, graph.Float32}:
		return binary(b, fs, fs, func(x, y float32) float32 { return float32(pow(float64(x), float64(y))) }), nil
	case [2]graph.DType{graph.Int64, graph.Int64}:
		return binary(b, is, is, func(x, y int64) int64 { return int64(pow(float64(x), float64(y))) }), nil
	case [2]graph.DType{graph.Float32, graph.Int64}:
		return binaryMixed(b, fs, is, fs, func(x float32, y int64) float32 { return float32(pow(float64(x), float64(y))) }), nil
	case [2]graph.DType{graph.Int64, graph.Float32}:
		return binaryMixed(b, is, fs, is, func(x int64, y float32) int64 { return int64(pow(float64(x), float64(y))) }), nil
	}
	return nil, nodeError(n, "not supported for %s and %s inputs", n.Inputs[0].DType, n.Inputs[1].DType)
}

// binaryMixed is binary for operands of two element types (Pow's base and
// exponent).
func binaryMixed[T, E, U any](b *bcast, getX func(*graph.Tensor) []T, getY func(*graph.Tensor) []E, put func(*graph.Tensor) []U, f func(x T, y E) U) Kernel {
	return func(in, out []*graph.Tensor) {
		x, y, z := getX(in[0]), getY(in[1]), put(out[0])
		sx, sy := b.step[0], b.step[1]
		for r := 0; r < b.rows; r++ {
			ox, oy := b.rowOff[0][r], b.rowOff[1][r]
			zr := z[r*b.inner : (r+1)*b.inner]
			for j := range zr {
				zr[j] = f(x[ox+j*sx], y[oy+j*sy])
			}
		}
	}
}

// Mod: fmod=0 takes the sign of the divisor (integers only), fmod=1 of the dividend.
func kernelMod(n *graph.Node) (Kernel, error) {
	fmod := n.Attrs.Int("fmod", 0) == 1
	b := newBcast(n.Outputs[0].StaticShape(), shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1]))
	switch n.Inputs[0].DType {
	case graph.Float32:
		if !fmod {
			return nil, nodeError(n, "fmod=0 is not allowed for floating-point inputs")
		}
		return binary(b, fs, fs, func(x, y float32) float32 { return float32(math.Mod(float64(x), float64(y))) }), nil
	case graph.Int64:
		return binary(b, is, is, func(x, y int64) int64 {
			if y == 0 {
				return 0
			}
			r := x % y
			if !fmod && r != 0 && (r < 0) != (y < 0) {
				r += y
			}
			return r
		}), nil
	}
	return nil, nodeError(n, "unsupported type %s", n.Inputs[0].DType)
}

// Max/Min are variadic: fold pairwise through the broadcast output.
func kernelMinMax(n *graph.Node) (Kernel, error) {
	isMax := n.Op == "Max"
	out := n.Outputs[0].StaticShape()
	var ks []Kernel
	for i := range n.Inputs {
		var b *bcast
		if i == 0 {
			b = newBcast(out, out, shapeOf(n.Inputs[0]))
		} else {
			b = newBcast(out, out, shapeOf(n.Inputs[i]))
		}
		first := i == 0
		switch n.Inputs[0].DType {
		case graph.Float32:
			ks = append(ks, binary(b, fs, fs, func(acc, y float32) float32 {
				if first || (isMax && y > acc) || (!isMax && y < acc) || y != y {
					return y
				}
				return acc
			}))
		case graph.Int64:
			ks = append(ks, binary(b, is, is, func(acc, y int64) int64 {
				if first || (isMax && y > acc) || (!isMax && y < acc) {
					return y
				}
				return acc
			}))
		default:
			return nil, nodeError(n, "unsupported type %s", n.Inputs[0].DType)
		}
	}
	pair := make([]*graph.Tensor, 2)
	return func(in, o []*graph.Tensor) {
		for i, k := range ks {
			pair[0], pair[1] = o[0], in[i]
			k(pair, o)
		}
	}, nil
}

func inferWhere(n *graph.Node) error {
	if n.Inputs[0].DType != graph.Bool {
		return nodeError(n, "condition must be bool, not %s", n.Inputs[0].DType)
	}
	if n.Inputs[1].DType != n.Inputs[2].DType {
		return nodeError(n, "X and Y types differ")
	}
	out, err := broadcastShapes(shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1]), shapeOf(n.Inputs[2]))
	if err != nil {
		return nodeError(n, "%v", err)
	}
	setOut(n, 0, n.Inputs[1].DType, out)
	return nil
}

func kernelWhere(n *graph.Node) (Kernel, error) {
	out := n.Outputs[0].StaticShape()
	b := newBcast(out, shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1]), shapeOf(n.Inputs[2]))
	dt := n.Inputs[1].DType
	return func(in, o []*graph.Tensor) {
		c := in[0].B
		for r := 0; r < b.rows; r++ {
			oc, ox, oy := b.rowOff[0][r], b.rowOff[1][r], b.rowOff[2][r]
			base := r * b.inner
			for j := 0; j < b.inner; j++ {
				take := c[oc+j*b.step[0]]
				switch dt {
				case graph.Float32:
					if take {
						o[0].F[base+j] = in[1].F[ox+j*b.step[1]]
					} else {
						o[0].F[base+j] = in[2].F[oy+j*b.step[2]]
					}
				case graph.Int64:
					if take {
						o[0].I[base+j] = in[1].I[ox+j*b.step[1]]
					} else {
						o[0].I[base+j] = in[2].I[oy+j*b.step[2]]
					}
				case graph.Bool:
					if take {
						o[0].B[base+j] = in[1].B[ox+j*b.step[1]]
					} else {
						o[0].B[base+j] = in[2].B[oy+j*b.step[2]]
					}
				}
			}
		}
	}, nil
}

// d(a+b) = da + db, broadcast undone
func gradAdd(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	return []*graph.Value{b.sumTo(gy[0], inShape(n, 0)), b.sumTo(gy[0], inShape(n, 1))}, nil
}

// d(a-b) = da - db
func gradSub(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := []*graph.Value{b.sumTo(gy[0], inShape(n, 0)), nil}
	if need[1] {
		out[1] = b.sumTo(b.neg(gy[0]), inShape(n, 1))
	}
	return out, nil
}

// d(ab) = b da + a db
func gradMul(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, 2)
	if need[0] {
		out[0] = b.sumTo(b.mul(gy[0], n.Inputs[1]), inShape(n, 0))
	}
	if need[1] {
		out[1] = b.sumTo(b.mul(gy[0], n.Inputs[0]), inShape(n, 1))
	}
	return out, nil
}

// d(a/b) = da/b - (a/b) db/b
func gradDiv(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, 2)
	ga := b.div(gy[0], n.Inputs[1])
	if need[0] {
		out[0] = b.sumTo(ga, inShape(n, 0))
	}
	if need[1] {
		out[1] = b.sumTo(b.neg(b.mul(ga, n.Outputs[0])), inShape(n, 1))
	}
	return out, nil
}

// d(a^p) = p a^(p-1) da + a^p log(a) dp
func gradPow(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, 2)
	a, p := n.Inputs[0], n.Inputs[1]
	if need[0] {
		if p.DType != graph.Float32 { // an integer exponent (no gradient of its own)
			p = b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, p)
		}
		pm1 := b.sub(p, b.scalar(1))
		out[0] = b.sumTo(b.mul(gy[0], b.mul(p, b.op("Pow", nil, a, pm1))), inShape(n, 0))
	}
	if need[1] {
		out[1] = b.sumTo(b.mul(gy[0], b.mul(n.Outputs[0], b.op("Log", nil, a))), inShape(n, 1))
	}
	return out, nil
}

// a mod b = a - b q with q = trunc(a/b) (fmod 1) or floor(a/b) (fmod 0), an
// integer that is constant between its jumps: da = dy, db = -q dy, and q is
// (a - y) / b either way.
func gradMod(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, 2)
	if need[0] {
		out[0] = b.sumTo(gy[0], inShape(n, 0))
	}
	if need[1] {
		q := b.div(b.sub(n.Inputs[0], n.Outputs[0]), n.Inputs[1])
		out[1] = b.sumTo(b.neg(b.mul(gy[0], q)), inShape(n, 1))
	}
	return out, nil
}

// where(c, a, b): the gradient goes to the branch that was taken
func gradWhere(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	zero := b.scalar(0)
	out := make([]*graph.Value, 3)
	if need[1] {
		out[1] = b.sumTo(b.op("Where", nil, n.Inputs[0], gy[0], zero), inShape(n, 1))
	}
	if need[2] {
		out[2] = b.sumTo(b.op("Where", nil, n.Inputs[0], zero, gy[0]), inShape(n, 2))
	}
	return out, nil
}

// max/min: the gradient goes to the inputs equal to the result
func gradMinMax(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	out := make([]*graph.Value, len(n.Inputs))
	for i, x := range n.Inputs {
		if need[i] {
			mask := b.op("Cast", graph.Attrs{"to": int64(graph.Float32)}, b.op("Equal", nil, x, n.Outputs[0]))
			out[i] = b.sumTo(b.mul(gy[0], mask), x.StaticShape())
		}
	}
	return out, nil
}
