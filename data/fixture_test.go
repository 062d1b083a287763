package data

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fixtureDir is the committed MNIST subset.
var fixtureDir = filepath.Join("..", "fixtures", "mnist")

// needFixture skips when the subset is not there.
func needFixture(t *testing.T) {
	t.Helper()
	for _, n := range []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		if _, err := os.Stat(filepath.Join(fixtureDir, n)); err != nil {
			t.Skipf("fixture %s not present", filepath.Join(fixtureDir, n))
		}
	}
}

func TestFixtureMNIST(t *testing.T) {
	needFixture(t)
	for _, tc := range []struct {
		split Split
		n     int
	}{{Train, 6000}, {Test, 1000}} {
		ds, err := Open(fixtureDir, tc.split)
		if err != nil {
			t.Fatal(err)
		}
		if ds.Len() != tc.n || ds.Format() != IDX || ds.Split() != tc.split {
			t.Fatalf("%v: %d examples, format %s", tc.split, ds.Len(), ds.Format())
		}
		if c, h, w := ds.Shape(); c != 1 || h != 28 || w != 28 {
			t.Fatalf("%v: shape %dx%dx%d", tc.split, c, h, w)
		}
		if ds.Classes() != 10 {
			t.Fatalf("%v: %d classes", tc.split, ds.Classes())
		}
		seen := map[int64]int{}
		for _, l := range ds.Labels() {
			if l < 0 || l > 9 {
				t.Fatalf("%v: label %d", tc.split, l)
			}
			seen[l]++
		}
		if len(seen) != 10 {
			t.Fatalf("%v: only %d distinct labels", tc.split, len(seen))
		}
		if err := CheckFits(ds, 1, 28, 28, 10); err != nil {
			t.Fatal(err)
		}
		if got := ds.Conversion(1, 28, 28); got != "images 1x28x28 used as they are" {
			t.Fatalf("conversion: %q", got)
		}
		t.Log(ds)
	}

	// The first test image and label, straight from the gz files.
	raw := gunzipFile(t, filepath.Join(fixtureDir, "t10k-images-idx3-ubyte.gz"))
	lab := gunzipFile(t, filepath.Join(fixtureDir, "t10k-labels-idx1-ubyte.gz"))
	ds, err := Open(fixtureDir, Test)
	if err != nil {
		t.Fatal(err)
	}
	x, y, err := ds.Batch(ds.First(1), 1, 28, 28)
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Shape) != 4 || x.Shape[0] != 1 || x.Shape[1] != 1 || x.Shape[2] != 28 || x.Shape[3] != 28 {
		t.Fatalf("batch shape %v", x.Shape)
	}
	if y[0] != int64(lab[8]) {
		t.Fatalf("label %d, file says %d", y[0], lab[8])
	}
	for i, v := range raw[16 : 16+28*28] {
		if x.F[i] != float32(v)/255 {
			t.Fatalf("pixel %d: %v, file says %d/255", i, x.F[i], v)
		}
	}
	if len(ds.First(0)) != 1000 || len(ds.First(5000)) != 1000 || len(ds.First(10)) != 10 {
		t.Fatal("First")
	}
}

func gunzipFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
