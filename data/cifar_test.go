package data

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestCIFAR10(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "cifar-10-batches-bin")
	p := [][]byte{randomBytes(cifarPixels, 1), randomBytes(cifarPixels, 2), randomBytes(cifarPixels, 3)}
	writeFile(t, filepath.Join(dir, "data_batch_2.bin"), cifarRecord([]byte{9}, p[2]))
	writeFile(t, filepath.Join(dir, "data_batch_1.bin"), append(cifarRecord([]byte{3}, p[0]), cifarRecord([]byte{7}, p[1])...))
	writeFile(t, filepath.Join(dir, "test_batch.bin"), append(cifarRecord([]byte{1}, p[1]), cifarRecord([]byte{0}, p[0])...))

	ds, err := Open(root, Train)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 3 || ds.Classes() != 10 || ds.Format() != CIFAR10 || ds.Dir() != dir {
		t.Fatalf("%v", ds)
	}
	if c, h, w := ds.Shape(); c != 3 || h != 32 || w != 32 {
		t.Fatalf("shape %d %d %d", c, h, w)
	}
	if got := ds.ClassNames(); len(got) != 10 || got[0] != "airplane" || got[9] != "truck" {
		t.Fatalf("names %v", got)
	}
	// data_batch_1 before data_batch_2, records in file order, planar RGB.
	x, y, err := ds.Batch([]int{2, 0, 1}, 3, 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	if y[0] != 9 || y[1] != 3 || y[2] != 7 {
		t.Fatalf("labels %v", y)
	}
	for k, want := range [][]byte{p[2], p[0], p[1]} {
		for i, v := range want {
			if x.F[k*cifarPixels+i] != float32(v)/255 {
				t.Fatalf("image %d pixel %d", k, i)
			}
		}
	}

	ds, err = Open(dir, Test)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 2 || ds.Label(0) != 1 || ds.Label(1) != 0 {
		t.Fatalf("test split %v labels %v", ds, ds.Labels())
	}

	// Names from batches.meta.txt when present.
	writeFile(t, filepath.Join(dir, "batches.meta.txt"), []byte(strings.Repeat("x\n", 9)+"last\n\n"))
	ds, err = Open(dir, Test)
	if err != nil {
		t.Fatal(err)
	}
	if ds.ClassNames()[9] != "last" {
		t.Fatalf("names %v", ds.ClassNames())
	}
}

func TestCIFAR100(t *testing.T) {
	dir := t.TempDir()
	a, b := randomBytes(cifarPixels, 4), randomBytes(cifarPixels, 5)
	writeFile(t, filepath.Join(dir, "train.bin"), append(cifarRecord([]byte{19, 99}, a), cifarRecord([]byte{0, 42}, b)...))
	ds, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 2 || ds.Classes() != 100 || ds.Format() != CIFAR100 || ds.ClassNames() != nil {
		t.Fatalf("%v names %v", ds, ds.ClassNames())
	}
	x, y, err := ds.Batch([]int{1}, 3, 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	if y[0] != 42 || x.F[5] != float32(b[5])/255 {
		t.Fatalf("label %d (want the fine label 42)", y[0])
	}
	_, err = Open(dir, Test)
	wantErr(t, err, ErrSplitMissing, dir, "no test split", "test.bin")

	// Fine names from fine_label_names.txt.
	var names bytes.Buffer
	for i := range 100 {
		names.WriteString(string(rune('a'+i%26)) + "\n")
	}
	writeFile(t, filepath.Join(dir, "fine_label_names.txt"), names.Bytes())
	ds, err = Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.ClassNames()) != 100 {
		t.Fatalf("names %v", ds.ClassNames())
	}
	wantErr(t, CheckFits(ds, 3, 224, 224, 10), ErrMismatch, dir, "dataset has 100 classes, the model outputs 10")
}

func TestCIFARErrors(t *testing.T) {
	px := randomBytes(cifarPixels, 6)
	cases := []struct {
		name, file string
		body       []byte
		kind       error
		parts      []string
	}{
		{"partial record", "test_batch.bin", cifarRecord([]byte{1}, px)[:3000], ErrFormat, []string{"3000 bytes is not a whole number of CIFAR-10 records", "3073"}},
		{"CIFAR-100 records named CIFAR-10", "test_batch.bin", cifarRecord([]byte{1, 2}, px), ErrFormat, []string{"fits CIFAR-100's records"}},
		{"label out of range", "test_batch.bin", append(cifarRecord([]byte{1}, px), cifarRecord([]byte{10}, px)...), ErrFormat, []string{"record 1 has label 10", "0..9"}},
		{"fine label out of range", "test.bin", cifarRecord([]byte{1, 100}, px), ErrFormat, []string{"record 0 has label 100", "0..99"}},
		{"coarse label out of range", "test.bin", cifarRecord([]byte{20, 1}, px), ErrFormat, []string{"coarse label 20"}},
		{"empty", "test_batch.bin", nil, ErrFormat, []string{"empty file"}},
		{"gzipped", "test_batch.bin", gzipBytes(cifarRecord([]byte{1}, px)), ErrFormat, []string{"gzip-compressed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, tc.file), tc.body)
			_, err := Open(dir, Test)
			wantErr(t, err, tc.kind, append([]string{filepath.Join(dir, tc.file)}, tc.parts...)...)
		})
	}

	// Only the test batch: the training split is missing.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "test_batch.bin"), cifarRecord([]byte{1}, px))
	_, err := Open(dir, Train)
	wantErr(t, err, ErrSplitMissing, dir, "no train split", "data_batch_1.bin")
}
