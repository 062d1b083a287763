package vmath

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// benchSizes are a row-sized input that stays in L1/L2 and one that streams
// from L3 or memory.
var benchSizes = []int{4096, 1 << 20}

// benchUnary runs every variant of a unary kernel, and a naive float64 loop,
// on each size, reporting ns per element.
func benchUnary(b *testing.B, kernel func(*variant) func(dst, x []float32), naive func(float64) float64) {
	for _, n := range benchSizes {
		rng := rand.New(rand.NewPCG(1, uint64(n)))
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(8 * rng.NormFloat64())
		}
		dst := make([]float32, n)
		for _, v := range supported() {
			f := kernel(v)
			b.Run(fmt.Sprintf("%s/n=%d", v.name, n), func(b *testing.B) {
				b.SetBytes(int64(8 * n))
				for b.Loop() {
					f(dst, x)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/elem")
			})
		}
		b.Run(fmt.Sprintf("naive/n=%d", n), func(b *testing.B) {
			b.SetBytes(int64(8 * n))
			for b.Loop() {
				for i, v := range x {
					dst[i] = float32(naive(float64(v)))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/elem")
		})
	}
}

func BenchmarkExp(b *testing.B) {
	benchUnary(b, func(v *variant) func(dst, x []float32) { return v.exp }, math.Exp)
}

func BenchmarkGelu(b *testing.B) {
	benchUnary(b, func(v *variant) func(dst, x []float32) { return v.gelu }, geluRef)
}

func BenchmarkGeluGrad(b *testing.B) {
	benchUnary(b, func(v *variant) func(dst, x []float32) {
		return func(dst, x []float32) { v.geluGrad(dst, x, x) }
	}, geluGradRef)
}

// BenchmarkSoftmaxRows runs rows of 197 (ViT-B/16 attention) and 1000
// (classifier) elements, 4096 and about 1M elements in all.
func BenchmarkSoftmaxRows(b *testing.B) {
	for _, c := range []struct{ rows, n int }{{21, 197}, {4, 1000}, {5323, 197}, {1024, 1000}} {
		rng := rand.New(rand.NewPCG(2, uint64(c.rows)))
		x := make([]float32, c.rows*c.n)
		for i := range x {
			x[i] = float32(4 * rng.NormFloat64())
		}
		dst := make([]float32, len(x))
		for _, v := range supported() {
			b.Run(fmt.Sprintf("%s/%dx%d", v.name, c.rows, c.n), func(b *testing.B) {
				b.SetBytes(int64(8 * len(x)))
				for b.Loop() {
					for r := 0; r < c.rows; r++ {
						v.softmaxRow(dst[r*c.n:(r+1)*c.n], x[r*c.n:(r+1)*c.n])
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/elem")
			})
		}
		b.Run(fmt.Sprintf("naive/%dx%d", c.rows, c.n), func(b *testing.B) {
			b.SetBytes(int64(8 * len(x)))
			for b.Loop() {
				for r := 0; r < c.rows; r++ {
					softmaxNaive(dst[r*c.n:(r+1)*c.n], x[r*c.n:(r+1)*c.n])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/elem")
		})
	}
}

// softmaxNaive is the float64 library loop the kernels replace.
func softmaxNaive(dst, x []float32) {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	var s float64
	for i, v := range x {
		e := math.Exp(float64(v - m))
		dst[i] = float32(e)
		s += e
	}
	for i := range dst {
		dst[i] = float32(float64(dst[i]) / s)
	}
}
