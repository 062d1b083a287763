package data

import (
	"bytes"
	"image"
	"image/color"
	"testing"
)

// allocLimit is how much one fuzz input may make a reader allocate: a fixed
// allowance plus a multiple of the input size wide enough for gzip's best
// compression ratio (about 1000:1) and buffer doubling.
func allocLimit(inputBytes int) uint64 { return 32<<20 + 3000*uint64(inputBytes) }

func FuzzIDX(f *testing.F) {
	img := idxBytes([]int{2, 3, 3}, randomBytes(18, 1))
	lab := idxBytes([]int{2}, []byte{0, 9})
	f.Add(img, lab, false)
	f.Add(gzipBytes(img), gzipBytes(lab), true)
	f.Add(img[:10], lab, false)
	f.Add(idxBytes([]int{4000000000, 28, 28}, nil), lab, true)
	f.Add(gzipBytes(idxBytes([]int{60000, 28, 28}, make([]byte, 1000))), lab, true)
	f.Fuzz(func(t *testing.T, images, labels []byte, stream bool) {
		size := int64(len(images))
		if stream { // size unknown, as for a pipe
			size = -1
		}
		var s *idxSplit
		var err error
		used := testingAllocBytes(func() {
			s, err = parseIDXPair(bytes.NewReader(images), size, "images", bytes.NewReader(labels), int64(len(labels)), "labels")
		})
		if used > allocLimit(len(images)+len(labels)) {
			t.Fatalf("allocated %d bytes for %d input bytes", used, len(images)+len(labels))
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if s.n <= 0 || s.h <= 0 || s.w <= 0 || len(s.pix) != s.n*s.h*s.w || len(s.labels) != s.n {
			t.Fatalf("inconsistent split: n %d h %d w %d, %d pixels, %d labels", s.n, s.h, s.w, len(s.pix), len(s.labels))
		}
		ds := &Dataset{n: s.n, c: 1, h: s.h, w: s.w, pix: s.pix, labels: s.labels, classes: 256}
		if s.h*s.w <= 1<<12 {
			if _, _, err := ds.Batch([]int{0, s.n - 1}, 3, 7, 5); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzCIFAR(f *testing.F) {
	rec10 := append(cifarRecord([]byte{3}, randomBytes(cifarPixels, 2)), cifarRecord([]byte{9}, randomBytes(cifarPixels, 3))...)
	rec100 := cifarRecord([]byte{19, 99}, randomBytes(cifarPixels, 4))
	f.Add(rec10, false)
	f.Add(rec100, true)
	f.Add(rec10[:100], false)
	f.Add(gzipBytes(rec10), false)
	f.Fuzz(func(t *testing.T, b []byte, hundred bool) {
		kind := cifar10
		if hundred {
			kind = cifar100
		}
		s := &cifarSplit{}
		var err error
		used := testingAllocBytes(func() {
			err = readCIFAR(bytes.NewReader(b), int64(len(b)), kind, "batch", s)
		})
		if used > allocLimit(len(b)) {
			t.Fatalf("allocated %d bytes for %d input bytes", used, len(b))
		}
		if err != nil {
			return
		}
		if s.n*kind.record() != len(b) || len(s.pix) != s.n*cifarPixels || len(s.labels) != s.n {
			t.Fatalf("inconsistent: %d records from %d bytes", s.n, len(b))
		}
		for _, l := range s.labels {
			if l < 0 || l >= int64(kind.classes) {
				t.Fatalf("label %d", l)
			}
		}
	})
}

// FuzzImage feeds bytes to the PNG/JPEG decode path of image folders, then
// converts the result to two model input shapes.
func FuzzImage(f *testing.F) {
	gray16 := image.NewGray16(image.Rect(0, 0, 3, 2))
	gray16.SetGray16(1, 1, color.Gray16{Y: 40000})
	pal := image.NewPaletted(image.Rect(0, 0, 4, 4), color.Palette{color.Black, color.NRGBA{1, 2, 3, 4}})
	for _, b := range [][]byte{
		encodePNG(f, grayImage(5, 4, 1)), encodePNG(f, rgbImage(3, 6, 2)), encodePNG(f, gray16), encodePNG(f, pal),
		encodeJPEG(f, grayImage(9, 8, 3)), encodeJPEG(f, rgbImage(17, 16, 4)), []byte("GIF89a"),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p *planar
		var err error
		used := testingAllocBytes(func() { p, err = decodeImage(b, 1<<20) })
		if used > allocLimit(len(b))+64<<20 {
			t.Fatalf("allocated %d bytes for %d input bytes", used, len(b))
		}
		if err != nil {
			return
		}
		if (p.c != 1 && p.c != 3) || p.h <= 0 || p.w <= 0 || len(p.pix) != p.c*p.h*p.w {
			t.Fatalf("decoded %d×%d×%d with %d bytes", p.c, p.h, p.w, len(p.pix))
		}
		for _, shape := range [][3]int{{3, 8, 6}, {1, 2, 3}} {
			cv := newConverter(shape[0], shape[1], shape[2])
			dst := make([]float32, shape[0]*shape[1]*shape[2])
			cv.convert(dst, p.pix, p.c, p.h, p.w)
			for _, v := range dst {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("value %v outside [0, 1]", v)
				}
			}
		}
	})
}
