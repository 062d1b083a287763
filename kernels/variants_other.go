//go:build !amd64 || purego

package kernels

// archVariants lists the assembly sgemm variants: none without amd64 or with
// the purego build tag.
func archVariants() []*sgemmVariant { return nil }

// archBF16 is the assembly variant of the bfloat16 products: none without
// amd64 or with the purego build tag.
func archBF16() *sgemmVariant { return nil }
