//go:build !linux

package onnximport

// largePages does nothing where huge pages are not asked for.
func largePages(f []float32) {}
