package plots

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/hyperat"
)

// synthetic is a 300-iteration run of three defenses validated every 50
// iterations; with collapse, the validations after the warm-up sit at chance
// and say so.
func synthetic(collapse bool) []hyperat.Record {
	defs := []string{"pgdat", "trades", "mart"}
	var recs []hyperat.Record
	for it := range 300 {
		d := defs[(it*7+it/3)%3]
		loss := 2.3*math.Exp(-float64(it)/120) + 0.3 + 0.1*math.Sin(float64(it))
		if d == "trades" {
			loss += 0.4
		}
		recs = append(recs, hyperat.Record{Kind: "step", It: it, Defense: d, Loss: loss, Eps: 0.1, LR: 1e-3, Seconds: 0.5})
		if n := it + 1; n%50 == 0 && n < 300 {
			r := hyperat.Record{Kind: "val", It: n, ValClean: 0.5 + 0.001*float64(n), ValRobust: 0.1 + 0.0015*float64(n)}
			if collapse && n >= 90 {
				r.ValClean, r.ValRobust, r.Collapsed = 0.1, 0.02, true
			}
			recs = append(recs, r)
		}
	}
	return recs
}

// The images' names in the tests' folders.
const (
	lossFile     = "loss.png"
	accuracyFile = "accuracy.png"
)

// write draws the records into dir.
func write(dir string, recs []hyperat.Record, r Run) error {
	return Write(recs, r, filepath.Join(dir, lossFile), filepath.Join(dir, accuracyFile))
}

var run300 = Run{Iters: 300, WarmupEnd: 90, Classes: 10, Robust: "robust (PGD-10)"}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// the documented size
	if s := img.Bounds().Size(); s.X != 900 || s.Y != 450 {
		t.Fatalf("%s: %dx%d, want 900x450", path, s.X, s.Y)
	}
	return img
}

// plotArea is the part of the image left of the legend strip, inside the
// margins where axes, ticks and title are drawn: only data is drawn there.
func plotArea() image.Rectangle { return image.Rect(110, 60, Width-230, Height-70) }

// count counts the pixels of r with exactly colour c.
func count(img image.Image, r image.Rectangle, c color.RGBA) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) == c {
				n++
			}
		}
	}
	return n
}

// coloured counts the pixels of r that are not a shade of grey: axes, ticks,
// text, grid and the warm-up and chance marks are grey, every data series has
// a colour.
func coloured(img image.Image, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA); c.R != c.G || c.G != c.B {
				n++
			}
		}
	}
	return n
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := write(dir, synthetic(false), run300); err != nil {
		t.Fatal(err)
	}
	loss := decode(t, filepath.Join(dir, lossFile))
	acc := decode(t, filepath.Join(dir, accuracyFile))
	area := plotArea()
	if n := coloured(loss, area); n < 2000 {
		t.Errorf("loss.png: %d coloured pixels in the plot area", n)
	}
	if n := coloured(acc, area); n < 2000 {
		t.Errorf("accuracy.png: %d coloured pixels in the plot area", n)
	}
	// every defense's points, and both accuracies, are drawn in the plot area
	for i, d := range []string{"mart", "pgdat", "trades"} {
		if n := count(loss, area, defenseColors[i]); n < 100 {
			t.Errorf("loss.png: %s has %d pixels of its colour", d, n)
		}
	}
	if n := count(acc, area, cleanColor); n < 200 {
		t.Errorf("accuracy.png: clean accuracy has %d pixels of its colour", n)
	}
	if n := count(acc, area, robustColor); n < 200 {
		t.Errorf("accuracy.png: robust accuracy has %d pixels of its colour", n)
	}
	if n := count(acc, image.Rect(0, 0, Width, Height), collapseColor); n != 0 {
		t.Errorf("accuracy.png: %d pixels of the collapse colour in a run that did not collapse", n)
	}
	// the count above tells data from an empty plot with its marks
	empty := t.TempDir()
	if err := write(empty, nil, run300); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{lossFile, accuracyFile} {
		if n := coloured(decode(t, filepath.Join(empty, f)), image.Rect(0, 0, Width, Height)); n != 0 {
			t.Errorf("%s of no metrics: %d coloured pixels", f, n)
		}
	}
	// no temporary files are left behind
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("folder holds %v", names)
	}
}

// A collapse recorded in the metrics is marked on the accuracy plot.
func TestCollapseMarked(t *testing.T) {
	dir := t.TempDir()
	if err := write(dir, synthetic(true), run300); err != nil {
		t.Fatal(err)
	}
	acc := decode(t, filepath.Join(dir, accuracyFile))
	if n := count(acc, plotArea(), collapseColor); n < 30 {
		t.Errorf("accuracy.png: the collapse is marked by %d pixels in the plot area", n)
	}
}

// The same metrics give the same bytes.
func TestDeterministic(t *testing.T) {
	recs := synthetic(true)
	a1, err := Accuracy(recs, run300)
	if err != nil {
		t.Fatal(err)
	}
	l1, err := Loss(recs, run300)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := Accuracy(recs, run300)
	l2, _ := Loss(recs, run300)
	if !bytes.Equal(a1, a2) || !bytes.Equal(l1, l2) {
		t.Fatal("two drawings of the same metrics differ")
	}
}

// Runs that have just started, were cut short or hold odd values still give
// both images.
func TestEdgeCases(t *testing.T) {
	cases := map[string]struct {
		recs []hyperat.Record
		run  Run
	}{
		"empty":         {nil, Run{}},
		"one step":      {[]hyperat.Record{{Kind: "step", It: 0, Defense: "pgdat", Loss: 2.3}}, Run{Iters: 40, WarmupEnd: 12, Classes: 10}},
		"constant loss": {[]hyperat.Record{{Kind: "step", It: 0, Loss: 1}, {Kind: "step", It: 1, Loss: 1}}, Run{Iters: 2}},
		"zero loss":     {[]hyperat.Record{{Kind: "step", It: 0}, {Kind: "step", It: 1}}, Run{}},
		"no val":        {synthetic(false)[:40], run300},
		"huge loss":     {[]hyperat.Record{{Kind: "step", It: 0, Loss: 1e300}, {Kind: "step", It: 1, Loss: -1e300}}, Run{}},
		"past iters":    {synthetic(false), Run{Iters: 100, WarmupEnd: 150}},
	}
	for name, c := range cases {
		dir := t.TempDir()
		if err := write(dir, c.recs, c.run); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		decode(t, filepath.Join(dir, lossFile))
		decode(t, filepath.Join(dir, accuracyFile))
	}
}

// A failure is an error, and does not keep the other image from being
// written.
func TestWriteFails(t *testing.T) {
	dir := t.TempDir()
	if err := write(filepath.Join(dir, "missing"), synthetic(false), run300); err == nil {
		t.Error("no error for a missing folder")
	}
	// loss.png cannot be replaced: a folder that is not empty has its name
	if err := os.MkdirAll(filepath.Join(dir, lossFile, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := write(dir, synthetic(false), run300); err == nil {
		t.Error("no error when loss.png cannot be written")
	}
	decode(t, filepath.Join(dir, accuracyFile))
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != lossFile && e.Name() != accuracyFile {
			t.Errorf("%s left behind", e.Name())
		}
	}
}
