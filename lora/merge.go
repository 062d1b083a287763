package lora

import (
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Merge adds scale B A to the weight w in its own layout: w [out, in] +=
// scale B A when transposed, else w [in, out] += scale (B A)^T. A is [r, in]
// and B [out, r]. Merged, the layer computes what its branch computes
// (Insert), at the cost of the pretrained layer. Merging several LoRAs into
// one weight adds their products, never their factors.
func Merge(w *graph.Tensor, transposed bool, a, b *graph.Tensor, scale float32) {
	r, in, out := a.Shape[0], a.Shape[1], b.Shape[0]
	if transposed {
		kernels.Sgemm(false, false, out, in, r, scale, b.F, r, a.F, in, 1, w.F, in)
		return
	}
	kernels.Sgemm(true, true, in, out, r, scale, a.F, in, b.F, r, 1, w.F, out)
}
