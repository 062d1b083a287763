// Package nn builds losses and their parts into a graph. It only adds
// generic operators, so compile infers their shapes and differentiates them
// like any other node. (The LoRA branch is package lora's.)
package nn

import (
	"github.com/hyperat/hyperat/graph"
)

func axes(g *graph.Graph, a ...int64) *graph.Value {
	return g.Const("axes", graph.I64([]int{len(a)}, a))
}

func scalar(g *graph.Graph, v float32) *graph.Value { return g.Const("c", graph.ScalarF32(v)) }

// LogSoftmax over the last axis.
func LogSoftmax(g *graph.Graph, z *graph.Value) *graph.Value {
	return g.Op("LogSoftmax", graph.Attrs{"axis": int64(-1)}, z)
}

// Softmax over the last axis.
func Softmax(g *graph.Graph, z *graph.Value) *graph.Value {
	return g.Op("Softmax", graph.Attrs{"axis": int64(-1)}, z)
}

// SumLast sums over the last axis, dropping it: [B, C] -> [B].
func SumLast(g *graph.Graph, x *graph.Value) *graph.Value {
	return g.Op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, x, axes(g, -1))
}

// Mean averages all elements into a scalar.
func Mean(g *graph.Graph, x *graph.Value) *graph.Value {
	return g.Op("ReduceMean", graph.Attrs{"keepdims": int64(0)}, x)
}

// CrossEntropyPerSample is -log softmax(z)_y for logits [B, C] and one-hot labels [B, C].
func CrossEntropyPerSample(g *graph.Graph, logits, onehot *graph.Value) *graph.Value {
	return g.Op("Neg", nil, SumLast(g, g.Op("Mul", nil, onehot, LogSoftmax(g, logits))))
}

// CrossEntropy is the mean softmax cross-entropy over the batch (PyTorch's
// F.cross_entropy with reduction "mean").
func CrossEntropy(g *graph.Graph, logits, onehot *graph.Value) *graph.Value {
	return Mean(g, CrossEntropyPerSample(g, logits, onehot))
}

// KLPerSample is KL(softmax(p) || softmax(q)) for each row of logits [B, C].
func KLPerSample(g *graph.Graph, p, q *graph.Value) *graph.Value {
	lp, lq := LogSoftmax(g, p), LogSoftmax(g, q)
	return SumLast(g, g.Op("Mul", nil, g.Op("Exp", nil, lp), g.Op("Sub", nil, lp, lq)))
}

// KL is the batch mean of KLPerSample (PyTorch's KLDivLoss with "batchmean").
func KL(g *graph.Graph, p, q *graph.Value) *graph.Value {
	return Mean(g, KLPerSample(g, p, q))
}

// TrueClassProb is softmax(z)_y per sample: [B].
func TrueClassProb(g *graph.Graph, logits, onehot *graph.Value) *graph.Value {
	return SumLast(g, g.Op("Mul", nil, Softmax(g, logits), onehot))
}

// MaxOtherProb is max over k != y of softmax(z)_k per sample: [B]. The true
// class is pushed below every probability by subtracting 2 there.
func MaxOtherProb(g *graph.Graph, logits, onehot *graph.Value) *graph.Value {
	p := Softmax(g, logits)
	masked := g.Op("Sub", nil, p, g.Op("Mul", nil, onehot, scalar(g, 2)))
	return g.Op("ReduceMax", graph.Attrs{"keepdims": int64(0)}, masked, axes(g, -1))
}

// Margin is the Carlini-Wagner margin max_{k != y} z_k - z_y per sample: [B].
// Attacks ascend it: a positive margin means misclassified.
func Margin(g *graph.Graph, logits, onehot *graph.Value) *graph.Value {
	zy := SumLast(g, g.Op("Mul", nil, logits, onehot))
	big := g.Op("Mul", nil, onehot, scalar(g, 1e4))
	other := g.Op("ReduceMax", graph.Attrs{"keepdims": int64(0)}, g.Op("Sub", nil, logits, big), axes(g, -1))
	return g.Op("Sub", nil, other, zy)
}
