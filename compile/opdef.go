// Package compile turns a graph into a runnable Program: it specializes shapes
// for a batch size, folds the shape subgraphs into constants, removes dead code,
// adds gradients, and binds one kernel per node. Passes are listed in passes.go,
// operators are defined in opdef.go's opDef. Linking compile registers every
// operator's arity with the IR (graph.Ops), which graph.Graph.Verify reads.
package compile

import (
	"errors"
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// Kernel runs one node on buffers whose shapes were fixed at compile time.
type Kernel func(in, out []*graph.Tensor)

// opDef is everything the toolchain knows about one operator, in one place:
// its arity, how to infer its outputs' dtypes and static shapes, how to
// build its kernel, its gradient rule, and the properties generic passes ask
// about. define registers the arity in the IR's registry (graph.DefineOp),
// which the verifier and the importer read, so an operator is one
// definition here plus, for an ONNX operator, its converter. Each family's
// file defines its operators next to their kernels and rules
// (elementwise.go, unary.go, shapeops.go, movement.go, reduce.go,
// softmax.go, layernorm.go, matmul.go, attention.go, conv.go, pool.go,
// scatter.go).
type opDef struct {
	name string
	// arity: how many inputs and outputs a node may have; inputs below
	// MinIn are required, the others optional (nil when omitted).
	arity graph.OpInfo
	// infer sets the outputs' dtypes and static shapes, reading constant
	// inputs where the spec makes the output shape depend on them; it may
	// also set the outputs' data when the shapes alone decide it (Shape).
	infer func(n *graph.Node) error
	// kernel builds the node's kernel for its static shapes; nil when infer
	// always makes the outputs constants.
	kernel func(n *graph.Node) (Kernel, error)
	// grad is the vector-Jacobian rule; nil when the operator has none, and
	// the gradient pass then fails naming it if a gradient must go through.
	grad rule
	// alias: the output is the first input's data under another shape, so
	// it shares the input's buffer and the node runs no step (when the
	// dtypes agree); fuse-view looks through such nodes.
	alias bool
	// prune, when set, is called by dead-code removal on a node it keeps;
	// live tells which values something reads. It may rewrite the node so
	// that it stops computing the outputs nobody reads.
	prune func(n *graph.Node, live func(*graph.Value) bool)
}

// defs holds the definition of every operator.
var defs = map[string]*opDef{}

// define adds an operator's definition and registers its arity with the
// IR; each family's file calls it from its init. It panics on an operator
// defined twice, without a shape rule, or with an arity no node can have.
func define(d opDef) {
	if _, dup := defs[d.name]; dup {
		panic("compile: operator " + d.name + " is defined twice")
	}
	if d.infer == nil {
		panic("compile: operator " + d.name + " has no shape rule")
	}
	if d.alias && d.arity.MinIn < 1 {
		panic("compile: operator " + d.name + " aliases an input it may not have")
	}
	graph.DefineOp(d.name, d.arity)
	defs[d.name] = &d
}

// ins is the arity of an operator with min..max inputs (max < 0: any
// number) and one output.
func ins(min, max int) graph.OpInfo {
	return graph.OpInfo{MinIn: min, MaxIn: max, MinOut: 1, MaxOut: 1}
}

// defOf returns n's definition, or an error naming the node.
func defOf(n *graph.Node) (*opDef, error) {
	d, ok := defs[n.Op]
	if !ok {
		return nil, nodeError(n, "operator %s has no implementation", n.Op)
	}
	return d, nil
}

// isAlias reports whether n's output shares its input's buffer (see opDef.alias).
func isAlias(n *graph.Node) bool {
	d := defs[n.Op]
	return d != nil && d.alias
}

// nodeErr is an error about one node.
type nodeErr struct {
	n   *graph.Node
	msg string
}

func (e *nodeErr) Error() string { return describeNode(e.n) + ": " + e.msg }

// describeNode names a node for an error: its name and operator, and the
// value it computes when it has no name (ONNX node names are optional).
func describeNode(n *graph.Node) string {
	if n.Name == "" && len(n.Outputs) > 0 && n.Outputs[0] != nil {
		return fmt.Sprintf("node computing %q (%s)", n.Outputs[0].Name, n.Op)
	}
	return fmt.Sprintf("node %q (%s)", n.Name, n.Op)
}

// nodeError is an error about node n.
func nodeError(n *graph.Node, format string, args ...any) error {
	return &nodeErr{n: n, msg: fmt.Sprintf(format, args...)}
}

// atNode names n in err, unless err already names a node.
func atNode(n *graph.Node, err error) error {
	var ne *nodeErr
	if err == nil || errors.As(err, &ne) {
		return err
	}
	return &nodeErr{n: n, msg: err.Error()}
}

// setOut fixes output i's dtype and static shape.
func setOut(n *graph.Node, i int, dt graph.DType, shape []int) {
	n.Outputs[i].DType = dt
	n.Outputs[i].Shape = graph.StaticShape(shape...)
}

// shapeOf returns an input's static shape; inputs are static after specialization.
func shapeOf(v *graph.Value) []int { return v.StaticShape() }

// constInts reads a constant integer input; ok is false when the input is absent.
func constInts(n *graph.Node, i int) (vals []int64, ok bool, err error) {
	v := n.In(i)
	if v == nil {
		return nil, false, nil
	}
	if !v.IsConst() {
		return nil, true, nodeError(n, "input %d (%s) must be known at compile time (data-dependent shapes are not supported)", i, v.Name)
	}
	return v.Const.Ints(), true, nil
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(n *graph.Node, axis int64, rank int) (int, error) {
	if axis < 0 {
		axis += int64(rank)
	}
	if axis < 0 || axis >= int64(rank) {
		return 0, nodeError(n, "axis %d out of range for rank %d", axis, rank)
	}
	return int(axis), nil
}

// strides of a row-major shape.
func stridesOf(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

func i64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
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
