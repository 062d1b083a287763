package data

import (
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// imageFolder makes a folder of two classes: images of every kind (gray,
// RGB, paletted, with alpha; PNG and JPEG; one in a subfolder), and files
// that are skipped. It returns the folder and the gray and RGB images.
func imageFolder(t *testing.T) (root string, gray *image.Gray, rgb *image.NRGBA) {
	t.Helper()
	root = t.TempDir()
	gray = grayImage(6, 5, 0)
	rgb = rgbImage(6, 5, 9)
	pal := image.NewPaletted(image.Rect(0, 0, 5, 6), color.Palette{color.NRGBA{10, 20, 30, 255}, color.NRGBA{200, 100, 50, 128}})
	pal.SetColorIndex(1, 2, 1)
	rgba := image.NewNRGBA(image.Rect(0, 0, 5, 6))
	rgba.SetNRGBA(0, 0, color.NRGBA{100, 150, 200, 0}) // transparent: colour kept, alpha dropped
	writeFile(t, filepath.Join(root, "dog", "b.png"), encodePNG(t, gray))
	writeFile(t, filepath.Join(root, "dog", "a.PNG"), encodePNG(t, rgb))
	writeFile(t, filepath.Join(root, "dog", "a", "c.jpeg"), encodeJPEG(t, rgb))
	writeFile(t, filepath.Join(root, "cat", "x.jpg"), encodeJPEG(t, gray))
	writeFile(t, filepath.Join(root, "cat", "p.png"), encodePNG(t, pal))
	writeFile(t, filepath.Join(root, "cat", "q.png"), encodePNG(t, rgba))
	writeFile(t, filepath.Join(root, "cat", "notes.txt"), []byte("not an image"))
	writeFile(t, filepath.Join(root, "cat", ".hidden.png"), []byte("ignored"))
	writeFile(t, filepath.Join(root, ".git", "x.png"), []byte("ignored"))
	writeFile(t, filepath.Join(root, "README"), []byte("ignored"))
	return root, gray, rgb
}

func TestImageFolder(t *testing.T) {
	root, gray, rgb := imageFolder(t)
	for _, split := range []Split{Train, Test} { // no split folders: both splits are the whole folder
		ds, err := Open(root, split)
		if err != nil {
			t.Fatal(err)
		}
		if ds.Len() != 6 || ds.Classes() != 2 || ds.Format() != ImageFolder {
			t.Fatalf("%v", ds)
		}
		if n := ds.ClassNames(); n[0] != "cat" || n[1] != "dog" {
			t.Fatalf("names %v", n)
		}
		if c, h, w := ds.Shape(); c != 3 || h != 6 || w != 5 {
			t.Fatalf("shape %d %d %d", c, h, w)
		}
		if !strings.Contains(ds.String(), "2 gray images") || !strings.Contains(ds.String(), "1 other files skipped") {
			t.Fatalf("summary %q", ds)
		}
	}
	ds, err := Open(root, Train)
	if err != nil {
		t.Fatal(err)
	}
	// ImageFolder's order: a folder's files (sorted) before its subfolders'.
	wantFiles := []string{"cat/p.png", "cat/q.png", "cat/x.jpg", "dog/a.PNG", "dog/b.png", "dog/a/c.jpeg"}
	for i, f := range wantFiles {
		if ds.Source(i) != filepath.Join(root, f) {
			t.Fatalf("example %d is %s, want %s", i, ds.Source(i), f)
		}
	}
	if l := ds.Labels(); l[0] != 0 || l[2] != 0 || l[3] != 1 || l[5] != 1 {
		t.Fatalf("labels %v", l)
	}
	x, _, err := ds.Batch(Range(6), 3, 6, 5)
	if err != nil {
		t.Fatal(err)
	}
	px := func(k, c, y, xx int) float32 { return x.F[((k*3+c)*6+y)*5+xx] }
	// Paletted: palette colours, alpha dropped.
	if px(0, 0, 0, 0) != 10.0/255 || px(0, 2, 0, 0) != 30.0/255 || px(0, 0, 2, 1) != 200.0/255 || px(0, 1, 2, 1) != 100.0/255 {
		t.Fatal("paletted colours")
	}
	if px(1, 0, 0, 0) != 100.0/255 || px(1, 2, 0, 0) != 200.0/255 || px(1, 0, 1, 1) != 0 {
		t.Fatal("NRGBA colours")
	}
	// Lossless PNGs are exact; gray ones replicated.
	for y := range 6 {
		for xx := range 5 {
			c := rgb.NRGBAAt(xx, y)
			if px(3, 0, y, xx) != float32(c.R)/255 || px(3, 1, y, xx) != float32(c.G)/255 || px(3, 2, y, xx) != float32(c.B)/255 {
				t.Fatalf("RGB PNG at %d,%d", xx, y)
			}
			g := float32(gray.GrayAt(xx, y).Y) / 255
			for c := range 3 {
				if px(4, c, y, xx) != g {
					t.Fatalf("gray PNG at %d,%d channel %d", xx, y, c)
				}
			}
		}
	}
	// JPEGs close to their source.
	var worst float64
	for y := range 6 {
		for xx := range 5 {
			c := rgb.NRGBAAt(xx, y)
			for ch, v := range []uint8{c.R, c.G, c.B} {
				worst = max(worst, math.Abs(float64(px(5, ch, y, xx))-float64(v)/255))
			}
		}
	}
	if worst > 0.2 {
		t.Fatalf("JPEG differs by %v", worst)
	}

	// Decoded images are cached; with no cache they are decoded again, same result.
	ds.SetCacheBytes(0)
	x2, _, err := ds.Batch(Range(6), 3, 6, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x.F {
		if x.F[i] != x2.F[i] {
			t.Fatal("uncached decode differs")
		}
	}

	// A file that breaks after Open is reported by Batch, naming it.
	writeFile(t, ds.Source(4), []byte("broken"))
	_, _, err = ds.Batch([]int{3, 4}, 3, 6, 5)
	wantErr(t, err, ErrFormat, ds.Source(4), "not a PNG or JPEG image")
}

func TestImageFolderSplits(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "train", "b", "1.png"), encodePNG(t, grayImage(4, 4, 1)))
	writeFile(t, filepath.Join(root, "train", "c", "1.png"), encodePNG(t, grayImage(8, 4, 2)))
	writeFile(t, filepath.Join(root, "val", "a", "1.png"), encodePNG(t, grayImage(4, 4, 3)))
	writeFile(t, filepath.Join(root, "val", "c", "1.png"), encodePNG(t, grayImage(4, 4, 4)))

	tr, err := Open(root, Train)
	if err != nil {
		t.Fatal(err)
	}
	te, err := Open(root, Test)
	if err != nil {
		t.Fatal(err)
	}
	// Classes are the union a, b, c in both splits.
	if tr.Classes() != 3 || te.Classes() != 3 {
		t.Fatalf("classes %d %d", tr.Classes(), te.Classes())
	}
	if l := tr.Labels(); l[0] != 1 || l[1] != 2 {
		t.Fatalf("train labels %v", l)
	}
	if l := te.Labels(); l[0] != 0 || l[1] != 2 {
		t.Fatalf("test labels %v", l)
	}
	if c, h, w := tr.Shape(); c != 1 || h != 0 || w != 0 {
		t.Fatalf("mixed sizes: shape %d %d %d", c, h, w)
	}
	if minH, minW, maxH, maxW := tr.Sizes(); minH != 4 || maxH != 8 || minW != 4 || maxW != 4 {
		t.Fatal("sizes")
	}
	if got := tr.Conversion(3, 8, 8); got != "images gray 4x4 to 8x4 -> 3x8x8: gray replicated to RGB, enlarged by bilinear interpolation" {
		t.Fatalf("conversion %q", got)
	}
	x, _, err := tr.Batch([]int{0, 1}, 1, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	if x.F[0] != float32(grayImage(4, 4, 1).GrayAt(0, 0).Y)/255 {
		t.Fatal("first pixel")
	}

	// Only train/: no test split.
	os.RemoveAll(filepath.Join(root, "val"))
	_, err = Open(root, Test)
	wantErr(t, err, ErrSplitMissing, root, "no test split", "test/ or val/")
	if _, err := Open(root, Train); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	root := t.TempDir()
	_, err := Open(filepath.Join(root, "nope"), Test)
	wantErr(t, err, ErrNoDataset, "nope", "cannot open", "no such file")

	file := filepath.Join(root, "f.bin")
	writeFile(t, file, []byte("x"))
	_, err = Open(file, Test)
	wantErr(t, err, ErrNoDataset, file, "is a file, not a folder")

	empty := filepath.Join(root, "empty")
	os.Mkdir(empty, 0o755)
	_, err = Open(empty, Test)
	wantErr(t, err, ErrNoDataset, empty, "no dataset found", "train-images-idx3-ubyte", "data_batch_1.bin", "subfolder of PNG/JPEG images per class")

	loose := filepath.Join(root, "loose")
	writeFile(t, filepath.Join(loose, "a.png"), encodePNG(t, grayImage(2, 2, 0)))
	_, err = Open(loose, Test)
	wantErr(t, err, ErrNoDataset, loose, "holds 1 image but no class subfolders")

	archive := filepath.Join(root, "archive")
	writeFile(t, filepath.Join(archive, "cifar-10-binary.tar.gz"), []byte("x"))
	_, err = Open(archive, Test)
	wantErr(t, err, ErrNoDataset, archive, "extract it first")

	pickle := filepath.Join(root, "pickle", "cifar-10-batches-py")
	writeFile(t, filepath.Join(pickle, "data_batch_1"), []byte("x"))
	writeFile(t, filepath.Join(pickle, "test_batch"), []byte("x"))
	_, err = Open(pickle, Test)
	wantErr(t, err, ErrNoDataset, pickle, "Python (pickle) version")

	noImages := filepath.Join(root, "noimages")
	writeFile(t, filepath.Join(noImages, "train", "a", "x.txt"), []byte("x"))
	_, err = Open(noImages, Train)
	wantErr(t, err, ErrNoDataset, filepath.Join(noImages, "train"), "no PNG or JPEG images")

	corrupt := filepath.Join(root, "corrupt")
	writeFile(t, filepath.Join(corrupt, "a", "1.png"), encodePNG(t, grayImage(2, 2, 0)))
	writeFile(t, filepath.Join(corrupt, "a", "2.png"), []byte("\x89PNG\r\n\x1a\nbroken"))
	writeFile(t, filepath.Join(corrupt, "b", "3.jpg"), []byte("GIF89a"))
	_, err = Open(corrupt, Train)
	wantErr(t, err, ErrFormat, filepath.Join(corrupt, "a", "2.png"), "PNG", "and 1 more unreadable images")

	huge := filepath.Join(root, "huge")
	hdr := encodePNG(t, grayImage(1, 1, 0))
	binary.BigEndian.PutUint32(hdr[16:], 100000) // the IHDR chunk's width
	binary.BigEndian.PutUint32(hdr[29:], crc32.ChecksumIEEE(hdr[12:29]))
	writeFile(t, filepath.Join(huge, "a", "1.png"), hdr)
	_, err = Open(huge, Train)
	wantErr(t, err, ErrFormat, filepath.Join(huge, "a", "1.png"), "PNG image of 100000x1 pixels exceeds")

	flat := filepath.Join(root, "flat")
	writeFile(t, filepath.Join(flat, "train", "1.png"), encodePNG(t, grayImage(2, 2, 0)))
	writeFile(t, filepath.Join(flat, "test", "1.png"), encodePNG(t, grayImage(2, 2, 0)))
	_, err = Open(flat, Train)
	wantErr(t, err, ErrNoDataset, filepath.Join(flat, "train"), "holds 1 image but no class subfolders")

	_, err = Open(root, Split(7))
	wantErr(t, err, ErrArgument, "unknown split")
}
