package testutil

import "github.com/hyperat/hyperat/graph"

// CrossEntropy adds to g the mean softmax cross-entropy of logits [B, C]
// with one-hot labels [B, C] (PyTorch's F.cross_entropy with reduction
// "mean"), as generic operators, so that tests can ask the compiler for the
// gradient of a scalar loss built in the graph and compare it with the
// closed form or with finite differences.
func CrossEntropy(g *graph.Graph, logits, onehot *graph.Value) *graph.Value {
	logp := g.Op("LogSoftmax", graph.Attrs{"axis": int64(-1)}, logits)
	axes := g.Const("axes", graph.I64([]int{1}, []int64{-1}))
	perSample := g.Op("Neg", nil, g.Op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, g.Op("Mul", nil, onehot, logp), axes))
	return g.Op("ReduceMean", graph.Attrs{"keepdims": int64(0)}, perSample)
}
