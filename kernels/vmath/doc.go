// Package vmath holds vectorized float32 transcendental kernels.
//
//go:generate go run -C _asm . -out ../vmath_amd64.s -stubs ../stubs_amd64.go -twins ../twins.go -consts ../consts.go -pkg vmath
package vmath
