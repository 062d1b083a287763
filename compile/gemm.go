package compile

// Gemm computes C = alpha op(A) op(B) + beta C on row-major matrices; beta 0
// overwrites C without reading it. All matrix products in compiled programs go
// through it, so one fast kernel serves the whole engine.
var Gemm = gemmRef

// gemmRef is the plain reference:
//
//	for i, j: C[i,j] = sum_p (alpha A[i,p]) B[p,j] + beta C[i,j]
//
// accumulated in C's row, so it allocates nothing.
func gemmRef(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		cr := c[i*ldc : i*ldc+n]
		for j := range cr {
			if beta == 0 {
				cr[j] = 0
			} else {
				cr[j] *= beta
			}
		}
		for p := 0; p < k; p++ {
			var av float32
			if transA {
				av = a[p*lda+i]
			} else {
				av = a[i*lda+p]
			}
			av *= alpha
			if transB {
				for j := range cr {
					cr[j] += av * b[j*ldb+p]
				}
			} else {
				br := b[p*ldb : p*ldb+n]
				for j, bv := range br {
					cr[j] += av * bv
				}
			}
		}
	}
}
