package layers

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// Tunable says what recognition could not find when it found nothing to
// tune, or returns nil: no attention at all (a CNN, an MLP), or attention
// whose queries, keys, values and output no linear layer computes or reads
// (a convolutional attention). Tuning such a model would adapt nothing the
// method means to adapt, so the commands refuse it with this error.
func (r *Report) Tunable() error {
	if len(r.Blocks) == 0 {
		return fmt.Errorf("no transformer block recognized: no attention (a Softmax between two activation MatMuls) among its %s; hyperat tunes Vision Transformers",
			count(len(r.Linears), "linear layer", "linear layers")+" and "+count(len(r.Convs), "convolution", "convolutions"))
	}
	for _, b := range r.Blocks {
		if len(b.Linears) > 0 {
			return nil
		}
	}
	return fmt.Errorf("%s recognized, but no linear layer computes the queries, keys or values of any or reads the output (the scores' first operand comes from %s); hyperat tunes the linear layers of Vision Transformers",
		count(len(r.Blocks), "attention", "attentions"), source(r.Blocks[0].QK.In(0)))
}

// count writes "1 convolution", "3 convolutions".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// source names the operator a value comes from, past layout operators:
// "Conv (node /attn/q/Conv)", "the graph input x".
func source(v *graph.Value) string {
	for v.Def != nil && layoutOp(v.Def.Op) {
		v = v.Def.In(0)
	}
	switch {
	case v.Def == nil && v.IsConst():
		return "the constant " + v.Name
	case v.Def == nil:
		return "the graph input " + v.Name
	}
	return fmt.Sprintf("%s (node %s)", v.Def.Op, v.Def.Name)
}
