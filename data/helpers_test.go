package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"github.com/hyperat/hyperat/graph"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// idxBytes builds an IDX file of unsigned bytes.
func idxBytes(dims []int, body []byte) []byte {
	b := []byte{0, 0, 0x08, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, body...)
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// randomBytes returns n seeded random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mnistLike writes an IDX split of n h×w images with labels i%classes.
func mnistLike(t *testing.T, dir, word string, n, h, w, classes int, gz bool, seed uint64) (pix, labels []byte) {
	t.Helper()
	pix = randomBytes(n*h*w, seed)
	labels = make([]byte, n)
	for i := range labels {
		labels[i] = byte(i % classes)
	}
	img, lab := idxBytes([]int{n, h, w}, pix), idxBytes([]int{n}, labels)
	suffix := ""
	if gz {
		img, lab, suffix = gzipBytes(img), gzipBytes(lab), ".gz"
	}
	writeFile(t, filepath.Join(dir, word+"-images-idx3-ubyte"+suffix), img)
	writeFile(t, filepath.Join(dir, word+"-labels-idx1-ubyte"+suffix), lab)
	return pix, labels
}

// cifarRecord is one CIFAR record: label bytes then 3072 pixel bytes.
func cifarRecord(labels []byte, pix []byte) []byte {
	return append(append([]byte{}, labels...), pix...)
}

// wantErr checks err wraps kind and its message holds every part.
func wantErr(t *testing.T, err error, kind error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one holding %q", parts)
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %q is not %v", err, kind)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q lacks %q", msg, p)
		}
	}
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// grayImage is an h×w gray image with pixel (x, y) = (x*7 + y*13 + seed) mod 256.
func grayImage(h, w, seed int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			g.SetGray(x, y, color.Gray{uint8(x*7 + y*13 + seed)})
		}
	}
	return g
}

// rgbImage is an opaque h×w image with distinct channel patterns.
func rgbImage(h, w, seed int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x*5 + seed), uint8(y*11 + seed), uint8(x*y + seed), 255})
		}
	}
	return m
}

type graphTensor = graph.Tensor
