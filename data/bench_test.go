package data

import "testing"

// BenchmarkBatch: a batch of 64 MNIST-sized images converted for a ViT.
func BenchmarkBatch(b *testing.B) {
	for _, s := range []struct {
		name    string
		c, h, w int
		tc, th  int
	}{
		{"mnist-identity", 1, 28, 28, 1, 28},
		{"mnist-to-3x224", 1, 28, 28, 3, 224},
		{"cifar-to-3x224", 3, 32, 32, 3, 224},
		{"3x500-to-3x224", 3, 500, 500, 3, 224},
	} {
		b.Run(s.name, func(b *testing.B) {
			ds := memDataset(64, s.c, s.h, s.w, 1)
			idx := Range(64)
			for b.Loop() {
				if _, _, err := ds.Batch(idx, s.tc, s.th, s.th); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
