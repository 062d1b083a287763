package compile

import (
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Products in low precision: with Options.Precision BF16 the precision pass
// marks every matrix product of the program (MatMul, Gemm, MatMulBias and
// the products of a MatMulConcat; forward and gradient alike) with the
// attribute precision=bf16, and their kernels run kernels.BF16's products:
// operands rounded to bfloat16, sums in float32. Everything else, Conv's
// products included, stays float32. Programs stay deterministic: BF16
// products repeat bit for bit whatever the number of cores.

// productOps are the operators whose kernels are matrix products that the
// precision pass may mark.
var productOps = map[string]bool{"MatMul": true, "Gemm": true, "MatMulBias": true, "MatMulConcat": true, "Attention": true, "AttentionGrad": true}

// markPrecision is the precision pass: a no-op for FP32.
func markPrecision(c *compilation) error {
	if c.opts.Precision != kernels.BF16 {
		return nil
	}
	for _, n := range c.g.Nodes {
		if !productOps[n.Op] {
			continue
		}
		n.Attrs = n.Attrs.Clone()
		n.Attrs["precision"] = kernels.BF16.String()
		if ps, ok := n.Attrs["products"].([]graph.Attrs); ok {
			marked := make([]graph.Attrs, len(ps))
			for i, a := range ps {
				marked[i] = a.Clone()
				marked[i]["precision"] = kernels.BF16.String()
			}
			n.Attrs["products"] = marked
		}
	}
	return nil
}

// precisionOf is the precision of node n's products.
func precisionOf(n *graph.Node) kernels.Precision {
	if n.Attrs.Str("precision", "") == kernels.BF16.String() {
		return kernels.BF16
	}
	return kernels.FP32
}
