// Package export will write a tuned model back into its original ONNX graph:
// merged weights in the right initializers (MatMul [in, out] versus Gemm
// transB layouts), every other byte unchanged, verified by re-import.
// Not implemented yet.
package export
