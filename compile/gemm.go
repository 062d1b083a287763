package compile

import "github.com/hyperat/hyperat/kernels"

// Gemm computes C = alpha op(A) op(B) + beta C on row-major matrices; beta 0
// overwrites C without reading it. All matrix products in compiled programs go
// through it, so one fast kernel serves the whole engine.
var Gemm = kernels.Sgemm

// GemmBatched runs batch independent products with fixed strides between
// operands (a stride of 0 shares an operand).
var GemmBatched = kernels.SgemmBatched

// GemmBias computes C = alpha op(A) op(B) + a bias row added to every row of C.
var GemmBias = kernels.SgemmBias

// GemmBatchedAt runs batch products whose operands start at given offsets.
var GemmBatchedAt = kernels.SgemmBatchedAt
