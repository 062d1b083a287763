//go:build !amd64 || purego

package vmath

// archVariants lists the assembly variants: none without amd64 or with the
// purego build tag.
func archVariants() []*variant { return nil }
