package npy_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
)

// FuzzRead feeds arbitrary bytes to the .npy reader: it may refuse them, never
// panic; what it accepts is self-consistent and survives a write and a read.
//
//	go test ./npy -run '^$' -fuzz FuzzRead -fuzztime 60s
func FuzzRead(f *testing.F) {
	add := func(t *graph.Tensor) {
		var buf bytes.Buffer
		if err := npy.Write(&buf, t); err != nil {
			f.Fatal(err)
		}
		b := buf.Bytes()
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:10])
	}
	add(graph.F32([]int{2, 3}, []float32{1, 2, 3, 4, 5, float32(math.Inf(-1))}))
	add(graph.I64([]int{4}, []int64{1, -2, 3, math.MaxInt64}))
	add(graph.ScalarF32(1))
	add(graph.NewTensor(graph.Float32, []int{0, 3}))
	for _, h := range []string{
		"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
		"{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1), }",
		"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
		"{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
	} {
		f.Add(append(append([]byte("\x93NUMPY\x01\x00"), byte(len(h)), 0), append([]byte(h), make([]byte, 16)...)...))
	}
	if files, _ := filepath.Glob(testutil.Fixture("golden", "*", "*.npy")); len(files) > 0 {
		for _, p := range files[:min(len(files), 4)] {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := npy.Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		if x.Len() != x.Numel() {
			t.Fatalf("shape %v with %d values", x.Shape, x.Len())
		}
		var buf bytes.Buffer
		if err := npy.Write(&buf, x); err != nil {
			t.Fatalf("cannot write back what was read: %v", err)
		}
		y, err := npy.Read(&buf)
		if err != nil {
			t.Fatalf("cannot read back what was written: %v", err)
		}
		if y.DType != x.DType || !slices.Equal(y.Shape, x.Shape) || !slices.Equal(y.I, x.I) || !sameBits(y.F, x.F) {
			t.Fatalf("round trip changed %v into %v", x, y)
		}
	})
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
