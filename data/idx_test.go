package data

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestIDXPlainAndGzip(t *testing.T) {
	dir := t.TempDir()
	trainPix, trainLab := mnistLike(t, dir, "train", 7, 5, 4, 10, false, 1)
	testPix, testLab := mnistLike(t, dir, "t10k", 3, 5, 4, 3, true, 2)
	for _, tc := range []struct {
		split     Split
		pix, labs []byte
	}{{Train, trainPix, trainLab}, {Test, testPix, testLab}} {
		ds, err := Open(dir, tc.split)
		if err != nil {
			t.Fatal(err)
		}
		if ds.Len() != len(tc.labs) || ds.Format() != IDX {
			t.Fatalf("%v: %d examples", tc.split, ds.Len())
		}
		if c, h, w := ds.Shape(); c != 1 || h != 5 || w != 4 {
			t.Fatalf("shape %d %d %d", c, h, w)
		}
		// Classes counted over both splits' labels: train has 0..6.
		if ds.Classes() != 7 || ds.ClassNames() != nil {
			t.Fatalf("%v: %d classes %v", tc.split, ds.Classes(), ds.ClassNames())
		}
		x, y, err := ds.Batch(Range(ds.Len()), 1, 5, 4)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range tc.pix {
			if x.F[i] != float32(v)/255 {
				t.Fatalf("%v pixel %d: %v want %v", tc.split, i, x.F[i], float32(v)/255)
			}
		}
		for i, l := range tc.labs {
			if y[i] != int64(l) || ds.Label(i) != int64(l) {
				t.Fatalf("label %d: %d want %d", i, y[i], l)
			}
		}
	}
}

// Compression is told by magic bytes, not by name; the dotted and prefixed
// spellings of other mirrors are accepted.
func TestIDXNamesAndMagic(t *testing.T) {
	dir := t.TempDir()
	pix := randomBytes(2*3*3, 3)
	writeFile(t, filepath.Join(dir, "emnist-digits-train-images.idx3-ubyte"), gzipBytes(idxBytes([]int{2, 3, 3}, pix)))
	writeFile(t, filepath.Join(dir, "emnist-digits-train-labels.idx1-ubyte.gz"), idxBytes([]int{2}, []byte{4, 1}))
	ds, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	x, y, err := ds.Batch([]int{1}, 1, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	if y[0] != 1 || x.F[0] != float32(pix[9])/255 || ds.Classes() != 5 {
		t.Fatalf("got label %d pixel %v classes %d", y[0], x.F[0], ds.Classes())
	}
	_, err = Open(dir, Test)
	wantErr(t, err, ErrSplitMissing, dir, "no test split", "emnist-digits-t10k-images-idx3-ubyte[.gz]", "emnist-digits-t10k-labels-idx1-ubyte[.gz]")

	// Two IDX datasets side by side are ambiguous.
	mnistLike(t, dir, "emnist-letters-train", 2, 3, 3, 2, false, 4)
	_, err = Open(dir, Train)
	wantErr(t, err, ErrNoDataset, "several datasets", "emnist-digits-", "emnist-letters-")
}

// torchvision's layout: ROOT/MNIST/raw/ with both the .gz and the extracted files.
func TestIDXTorchvisionLayout(t *testing.T) {
	root := t.TempDir()
	raw := filepath.Join(root, "MNIST", "raw")
	pix, _ := mnistLike(t, raw, "t10k", 2, 2, 2, 2, false, 5)
	mnistLike(t, raw, "t10k", 2, 2, 2, 2, true, 6) // different content, compressed: not preferred
	ds, err := Open(root, Test)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Dir() != raw || ds.Path() != root {
		t.Fatalf("dir %s path %s", ds.Dir(), ds.Path())
	}
	x, _, err := ds.Batch([]int{0}, 1, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if x.F[3] != float32(pix[3])/255 {
		t.Fatal("read the .gz file, want the uncompressed one")
	}
}

func TestIDXErrors(t *testing.T) {
	good := idxBytes([]int{2, 3, 3}, randomBytes(18, 7))
	labels := idxBytes([]int{2}, []byte{0, 1})
	cases := []struct {
		name   string
		images []byte
		labels []byte
		parts  []string
	}{
		{"wrong magic", append([]byte{1, 2}, good[2:]...), labels, []string{"not an IDX file"}},
		{"png as idx", []byte("\x89PNG\r\n\x1a\n0000000000000"), labels, []string{"not an IDX file"}},
		{"float elements", append([]byte{0, 0, 0x0D}, good[3:]...), labels, []string{"float32", "expected unsigned bytes"}},
		{"labels as images", labels, labels, []string{"1 dimension, expected 3"}},
		{"images as labels", good, good, []string{"3 dimensions, expected 1"}},
		{"empty", nil, labels, []string{"too short"}},
		{"truncated header", good[:9], labels, []string{"truncated IDX header"}},
		{"truncated data", good[:len(good)-1], labels, []string{"header says 2×3×3", "17 bytes after the header"}},
		{"trailing data", append(good[:len(good):len(good)], 0), labels, []string{"19 bytes after the header"}},
		{"zero images", idxBytes([]int{0, 3, 3}, nil), labels, []string{"dimension 0 is 0"}},
		{"huge side", idxBytes([]int{1, 100000, 1}, nil), labels, []string{"100000 exceeds"}},
		{"huge count", idxBytes([]int{4000000000, 28, 28}, nil), labels, []string{"more than the"}},
		{"count mismatch", good, idxBytes([]int{3}, []byte{0, 1, 2}), []string{"holds 2 images", "holds 3 labels"}},
		{"gz truncated", gzipBytes(good)[:30], labels, []string{"gz"}},
		{"gz short data", gzipBytes(good[:len(good)-4]), labels, []string{"truncated", "decompressed file ends after 14"}},
		{"gz trailing data", gzipBytes(append(good[:len(good):len(good)], 1, 2)), labels, []string{"decompressed file is longer than its IDX header says"}},
		{"gz bad header", []byte{0x1f, 0x8b, 0, 0}, labels, []string{"corrupt gzip header"}},
		{"gz bad checksum", corruptCRC(gzipBytes(good)), labels, []string{"gzip: invalid checksum"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "train-images-idx3-ubyte")
			if tc.name[:2] == "gz" {
				img += ".gz"
			}
			writeFile(t, img, tc.images)
			writeFile(t, filepath.Join(dir, "train-labels-idx1-ubyte"), tc.labels)
			_, err := Open(dir, Train)
			wantErr(t, err, ErrFormat, append([]string{dir}, tc.parts...)...)
		})
	}
}

// corruptCRC flips a bit of a gzip stream's CRC-32 trailer.
func corruptCRC(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-8] ^= 1
	return b
}

// A header promising a lot with little behind it must not allocate what it promises.
func TestIDXLyingHeaderAllocatesLittle(t *testing.T) {
	b := gzipBytes(idxBytes([]int{5000000, 28, 28}, randomBytes(100, 8))) // claims 3.9 GB
	allocs := testingAllocBytes(func() {
		if _, _, err := readIDX(bytes.NewReader(b), -1, 3, "x"); err == nil {
			t.Fatal("no error")
		}
	})
	if allocs > 8<<20 {
		t.Fatalf("allocated %d bytes", allocs)
	}
}
