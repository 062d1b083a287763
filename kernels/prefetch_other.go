//go:build !amd64 || purego

package kernels

// prefetchRows is the twin of the assembly prefetch: a prefetch changes
// nothing but the cache, so without one there is nothing to do.
func prefetchRows(x []float32, rows, ld, n int) {}
