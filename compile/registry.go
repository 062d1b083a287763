// Package compile turns a graph into a runnable Program: it specializes shapes
// for a batch size, folds the shape subgraphs into constants, removes dead code,
// adds gradients, and binds one kernel per node. Passes are listed in passes.go.
package compile

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// Kernel runs one node on buffers whose shapes were fixed at compile time.
type Kernel func(in, out []*graph.Tensor)

// opImpl is what compile knows about an operator: how to infer the outputs'
// dtypes and static shapes (reading constant inputs where the spec makes the
// output shape depend on them), and how to build its kernel.
type opImpl struct {
	infer  func(n *graph.Node) error
	kernel func(n *graph.Node) (Kernel, error)
}

var impls = map[string]*opImpl{}

func register(op string, infer func(*graph.Node) error, kernel func(*graph.Node) (Kernel, error)) {
	if _, ok := graph.Ops[op]; !ok {
		panic("compile: operator " + op + " is not in the graph op table")
	}
	impls[op] = &opImpl{infer: infer, kernel: kernel}
}

// nodeError wraps an error with the node it concerns.
func nodeError(n *graph.Node, format string, args ...any) error {
	return fmt.Errorf("node %q (%s): %s", n.Name, n.Op, fmt.Sprintf(format, args...))
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
