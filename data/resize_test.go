package data

import (
	"math"
	"path/filepath"
	"testing"
)

// memDataset is an in-memory dataset of n random images c×h×w.
func memDataset(n, c, h, w int, seed uint64) *Dataset {
	return &Dataset{path: "mem", dir: "mem", format: IDX, n: n, c: c, h: h, w: w, classes: 10,
		pix: randomBytes(n*c*h*w, seed), labels: make([]int64, n)}
}

func TestIdentityIsBitExact(t *testing.T) {
	ds := memDataset(3, 3, 32, 32, 1)
	for i := range 256 { // every byte value appears
		ds.pix[i] = byte(i)
	}
	x, _, err := ds.Batch([]int{0, 1, 2}, 3, 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range ds.pix {
		if x.F[i] != float32(v)/255 {
			t.Fatalf("element %d: %v, want %v", i, x.F[i], float32(v)/255)
		}
	}
	if got := ds.Conversion(3, 32, 32); got != "images 3x32x32 used as they are" {
		t.Fatal(got)
	}
}

func TestGrayToRGBReplicates(t *testing.T) {
	ds := memDataset(2, 1, 28, 28, 2)
	for _, size := range []int{28, 224, 17} {
		g, _, err := ds.Batch([]int{1, 0}, 1, size, size)
		if err != nil {
			t.Fatal(err)
		}
		x, _, err := ds.Batch([]int{1, 0}, 3, size, size)
		if err != nil {
			t.Fatal(err)
		}
		plane := size * size
		for k := range 2 {
			for c := range 3 {
				for i := range plane {
					if x.F[(k*3+c)*plane+i] != g.F[k*plane+i] {
						t.Fatalf("size %d image %d channel %d pixel %d differs from the gray batch", size, k, c, i)
					}
				}
			}
		}
	}
	if got := ds.Conversion(3, 224, 224); got != "images 1x28x28 -> 3x224x224: gray replicated to RGB, enlarged by bilinear interpolation" {
		t.Fatal(got)
	}
}

func TestRGBToGrayLuma(t *testing.T) {
	ds := memDataset(1, 3, 4, 4, 3)
	copy(ds.pix, []byte{255}) // R of pixel 0
	ds.pix[16], ds.pix[32] = 255, 255
	x, _, err := ds.Batch([]int{0}, 1, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	if x.F[0] != 1 {
		t.Fatalf("white gives %v", x.F[0])
	}
	for i := range 16 {
		r, g, b := float64(ds.pix[i]), float64(ds.pix[16+i]), float64(ds.pix[32+i])
		want := (0.299*r + 0.587*g + 0.114*b) / 255
		if math.Abs(float64(x.F[i])-want) > 1e-6 || x.F[i] > 1 {
			t.Fatalf("pixel %d: %v want %v", i, x.F[i], want)
		}
	}
	if got := ds.Conversion(1, 4, 4); got != "images 3x4x4 -> 1x4x4: RGB to gray by ITU-R 601 luma" {
		t.Fatal(got)
	}
}

// bilinearRef is PyTorch's interpolate(mode="bilinear", align_corners=False)
// written out directly in two dimensions.
func bilinearRef(src []float64, inH, inW, outH, outW int) []float64 {
	pos := func(o, in, out int) (int, int, float64) {
		s := max((float64(o)+0.5)*float64(in)/float64(out)-0.5, 0)
		i0 := int(math.Floor(s))
		return i0, min(i0+1, in-1), s - float64(i0)
	}
	dst := make([]float64, outH*outW)
	for oy := range outH {
		y0, y1, ly := pos(oy, inH, outH)
		for ox := range outW {
			x0, x1, lx := pos(ox, inW, outW)
			top := (1-lx)*src[y0*inW+x0] + lx*src[y0*inW+x1]
			bot := (1-lx)*src[y1*inW+x0] + lx*src[y1*inW+x1]
			dst[oy*outW+ox] = (1-ly)*top + ly*bot
		}
	}
	return dst
}

// areaRef averages the input over each output pixel's footprint, weighting
// input pixels by the area they share with it.
func areaRef(src []float64, inH, inW, outH, outW int) []float64 {
	overlap := func(o, out, in, i int) float64 {
		lo, hi := float64(o)*float64(in)/float64(out), float64(o+1)*float64(in)/float64(out)
		return max(0, min(hi, float64(i+1))-max(lo, float64(i)))
	}
	dst := make([]float64, outH*outW)
	for oy := range outH {
		for ox := range outW {
			var sum, area float64
			for y := range inH {
				for x := range inW {
					a := overlap(oy, outH, inH, y) * overlap(ox, outW, inW, x)
					sum += a * src[y*inW+x]
					area += a
				}
			}
			dst[oy*outW+ox] = sum / area
		}
	}
	return dst
}

func checkResize(t *testing.T, inH, inW, outH, outW int, ref func([]float64, int, int, int, int) []float64) {
	t.Helper()
	ds := memDataset(1, 1, inH, inW, uint64(inH*1000+inW))
	x, _, err := ds.Batch([]int{0}, 1, outH, outW)
	if err != nil {
		t.Fatal(err)
	}
	src := make([]float64, inH*inW)
	for i, v := range ds.pix {
		src[i] = float64(v) / 255
	}
	want := ref(src, inH, inW, outH, outW)
	for i, w := range want {
		if math.Abs(float64(x.F[i])-w) > 2e-6 {
			t.Fatalf("%dx%d -> %dx%d: element %d is %v, want %v", inH, inW, outH, outW, i, x.F[i], w)
		}
	}
}

func TestBilinearEnlarge(t *testing.T) {
	// PyTorch: interpolate([[0, 1]], size=4, mode="linear") = [0, 0.25, 0.75, 1].
	m := newAxisMap(2, 4)
	row := []float32{0, 1}
	want := []float32{0, 0.25, 0.75, 1}
	for o := range 4 {
		var v float32
		for k := m.off[o]; k < m.off[o+1]; k++ {
			v += m.w[k] * row[m.idx[k]]
		}
		if v != want[o] {
			t.Fatalf("output %d: %v want %v", o, v, want[o])
		}
	}
	for _, s := range [][4]int{{28, 28, 224, 224}, {32, 32, 224, 224}, {3, 5, 7, 11}, {1, 1, 4, 4}, {5, 4, 9, 4}, {28, 28, 29, 29}} {
		checkResize(t, s[0], s[1], s[2], s[3], bilinearRef)
	}
}

func TestAreaShrink(t *testing.T) {
	for _, s := range [][4]int{{56, 56, 28, 28}, {64, 48, 7, 5}, {3, 3, 2, 2}, {31, 29, 1, 1}, {9, 4, 4, 4}} {
		checkResize(t, s[0], s[1], s[2], s[3], areaRef)
	}
	// An axis shrunk by 2 averages pairs exactly.
	m := newAxisMap(4, 2)
	if len(m.w) != 4 || m.w[0] != 0.5 || m.w[3] != 0.5 {
		t.Fatalf("weights %v", m.w)
	}
}

// One axis enlarged, the other shrunk: the separable composition of the two
// one-dimensional references.
func TestMixedResize(t *testing.T) {
	ds := memDataset(1, 1, 10, 3, 9)
	x, _, err := ds.Batch([]int{0}, 1, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	src := make([]float64, 30)
	for i, v := range ds.pix {
		src[i] = float64(v) / 255
	}
	rows := make([]float64, 0, 80) // width 3 -> 8 by bilinear, row by row
	for y := range 10 {
		rows = append(rows, bilinearRef(src[y*3:(y+1)*3], 1, 3, 1, 8)...)
	}
	for xx := range 8 { // height 10 -> 4 by area, column by column
		col := make([]float64, 10)
		for y := range 10 {
			col[y] = rows[y*8+xx]
		}
		for oy, w := range areaRef(col, 10, 1, 4, 1) {
			if math.Abs(float64(x.F[oy*8+xx])-w) > 2e-6 {
				t.Fatalf("(%d, %d): %v want %v", oy, xx, x.F[oy*8+xx], w)
			}
		}
	}
	if got := ds.Conversion(1, 4, 8); got != "images 1x10x3 -> 1x4x8: resized (height by area averaging, width by bilinear interpolation), aspect ratio not kept" {
		t.Fatal(got)
	}
}

func TestResizeStaysInRange(t *testing.T) {
	ds := memDataset(1, 3, 13, 7, 4)
	for i := range ds.pix[:13*7] {
		ds.pix[i] = 255 // a white plane stays exactly white
	}
	for _, s := range [][2]int{{224, 224}, {5, 3}, {13, 30}, {1, 1}} {
		x, _, err := ds.Batch([]int{0}, 3, s[0], s[1])
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range x.F {
			if v < 0 || v > 1 {
				t.Fatalf("%v: value %v", s, v)
			}
			if i < s[0]*s[1] && math.Abs(float64(v)-1) > 1e-6 {
				t.Fatalf("%v: white became %v", s, v)
			}
		}
	}
}

func TestBatchErrors(t *testing.T) {
	ds := memDataset(3, 1, 2, 2, 5)
	_, _, err := ds.Batch([]int{0, 3}, 1, 2, 2)
	wantErr(t, err, ErrArgument, "index 3 out of range [0, 3)")
	_, _, err = ds.Batch([]int{-1}, 1, 2, 2)
	wantErr(t, err, ErrArgument, "index -1")
	_, _, err = ds.Batch([]int{0}, 4, 2, 2)
	wantErr(t, err, ErrArgument, "4 channels")
	_, _, err = ds.Batch([]int{0}, 1, 0, 2)
	wantErr(t, err, ErrArgument, "0x2")
	x, y, err := ds.Batch(nil, 3, 2, 2)
	if err != nil || x.Shape[0] != 0 || len(y) != 0 {
		t.Fatalf("empty batch: %v %v", x, err)
	}
}

func TestCheckFits(t *testing.T) {
	ds := memDataset(2, 1, 28, 28, 6)
	if err := CheckFits(ds, 3, 224, 224, 10); err != nil {
		t.Fatal(err)
	}
	if err := CheckFits(ds, 1, 28, 28, 0); err != nil { // classes unknown: not checked
		t.Fatal(err)
	}
	wantErr(t, CheckFits(ds, 3, 224, 224, 5), ErrMismatch, "mem: dataset has 10 classes, the model outputs 5")
	wantErr(t, CheckFits(ds, 4, 224, 224, 10), ErrMismatch, "the model takes 4 input channels")
	wantErr(t, CheckFits(ds, 3, -1, 224, 10), ErrMismatch, "input size -1x224")
	wantErr(t, CheckFits(nil, 3, 224, 224, 10), ErrArgument, "no dataset")

	dir := t.TempDir()
	mnistLike(t, dir, "t10k", 4, 2, 2, 4, false, 7)
	ds, err := Open(dir, Test)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckFits(ds, 1, 2, 2, 3), ErrMismatch, dir+": dataset has 4 classes, the model outputs 3")

	folder := t.TempDir()
	for _, c := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(folder, c, "1.png"), encodePNG(t, grayImage(3, 3, 0)))
	}
	ds, err = Open(folder, Test)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckFits(ds, 1, 3, 3, 2), ErrMismatch, "dataset has 3 classes (one per subfolder), the model outputs 2")
}

// View adapts a Dataset to a Batch(indices) (x, []int, error) interface.
func TestView(t *testing.T) {
	var src interface {
		Batch([]int) (*graphTensor, []int, error)
		Len() int
	} = memDataset(4, 1, 3, 3, 8).View(3, 5, 5)
	x, y, err := src.Batch([]int{3, 1})
	if err != nil || len(y) != 2 || x.Shape[1] != 3 || x.Shape[2] != 5 || src.Len() != 4 {
		t.Fatalf("%v %v %v", x.Shape, y, err)
	}
}
