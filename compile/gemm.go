package compile

import "github.com/hyperat/hyperat/kernels"

// Gemm computes C = alpha op(A) op(B) + beta C on row-major matrices in
// float32; beta 0 overwrites C without reading it. Conv's products go
// through it; the matrix-product operators (matmul.go) call the kernels of
// their node's precision (precision.go), kernels.FP32 unless the program
// was compiled with Options.Precision BF16.
var Gemm = kernels.Sgemm
