// Package plots draws a tuning run's metrics (the records of
// hyperat.Trainer.Run) as two PNG images, which hyperat-tune writes into the
// workspace (workspace.LossPlotFile and AccuracyPlotFile):
//
//	Loss      training loss per iteration, one colour per defense sampled,
//	          with a running mean over all of them
//	Accuracy  validation clean and robust accuracy, the end of the eps
//	          warm-up, chance level, and the validations that found the run
//	          collapsed
//
// The same metrics give the same bytes: nothing in a plot depends on the
// time, the map order or the machine's state, and the rasterizer and the PNG
// encoder are deterministic.
package plots

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/hyperat"
)

// Size of both images in pixels.
const (
	Width  = 900
	Height = 450
	dpi    = 100
)

// Run describes what the metrics do not record.
type Run struct {
	Iters     int     // iterations planned (the x axis ends there); 0: the last recorded
	WarmupEnd float64 // iteration at which eps reaches its target; 0: not marked
	Classes   int     // chance level 1/Classes is drawn; 0: not drawn
	Robust    string  // legend of the robust accuracy, e.g. "robust (PGD-10)"; "" gives "robust"
}

// Colours of the series. The tests look for them.
var (
	cleanColor    = color.RGBA{R: 0, G: 90, B: 200, A: 255}
	robustColor   = color.RGBA{R: 230, G: 120, B: 0, A: 255}
	collapseColor = color.RGBA{R: 210, G: 0, B: 0, A: 255}
	markColor     = color.RGBA{R: 110, G: 110, B: 110, A: 255}
	trendColor    = color.RGBA{R: 0, G: 0, B: 0, A: 255}
	// one per defense, in the defenses' alphabetical order
	defenseColors = []color.RGBA{
		{R: 220, G: 50, B: 140, A: 255},
		{R: 0, G: 150, B: 90, A: 255},
		{R: 100, G: 60, B: 200, A: 255},
		{R: 0, G: 160, B: 200, A: 255},
		{R: 170, G: 140, B: 0, A: 255},
		{R: 140, G: 70, B: 20, A: 255},
	}
)

// Write draws the records as the loss plot at lossPath and the accuracy
// plot at accuracyPath, each written atomically. It never panics: a failure
// of the drawing code is returned as an error, the image it was drawing keeps
// its previous content, and the other image is still written.
func Write(recs []hyperat.Record, r Run, lossPath, accuracyPath string) error {
	put := func(path string, fn func([]hyperat.Record, Run) ([]byte, error)) (err error) {
		name := filepath.Base(path)
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("drawing %s: %v", name, p)
			}
		}()
		b, err := fn(recs, r)
		if err != nil {
			return fmt.Errorf("drawing %s: %v", name, err)
		}
		return fsx.WriteFile(path, b)
	}
	return errors.Join(put(lossPath, Loss), put(accuracyPath, Accuracy))
}

// Loss draws the training loss. A step record's iteration counts from 0, so
// step i is drawn at i+1, the number of iterations done after it, the same
// abscissa as a validation made after it.
func Loss(recs []hyperat.Record, r Run) ([]byte, error) {
	byDef := map[string]plotter.XYs{}
	var all plotter.XYs
	for _, rec := range recs {
		if rec.Kind != "step" || !finite(rec.Loss) {
			continue
		}
		pt := plotter.XY{X: float64(rec.It + 1), Y: rec.Loss}
		byDef[rec.Defense] = append(byDef[rec.Defense], pt)
		all = append(all, pt)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].X < all[j].X })
	names := make([]string, 0, len(byDef))
	for n := range byDef {
		names = append(names, n)
	}
	sort.Strings(names)

	p := newPlot("training loss", "loss")
	lg := newLegend()
	for i, n := range names {
		s, err := plotter.NewScatter(byDef[n])
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: defenseColors[i%len(defenseColors)], Radius: vg.Points(2), Shape: draw.CircleGlyph{}}
		p.Add(s)
		label := n
		if label == "" {
			label = "loss"
		}
		lg.Add(label, s)
	}
	if k := trendWindow(r.Iters, len(all)); k > 1 && len(all) > 1 {
		l, err := plotter.NewLine(runningMean(all, k))
		if err != nil {
			return nil, err
		}
		l.LineStyle = draw.LineStyle{Color: trendColor, Width: vg.Points(1.5)}
		p.Add(l)
		lg.Add(fmt.Sprintf("mean over %d iterations", k), l)
	}
	lo, hi := 0.0, 1.0
	if len(all) > 0 {
		lo, hi = math.Min(0, minY(all)), maxY(all)
		if hi <= lo {
			hi = lo + 1
		}
		hi += 0.05 * (hi - lo)
	}
	p.Y.Min, p.Y.Max = lo, hi
	addWarmup(p, &lg, r)
	setX(p, recs, r)
	return render(p, lg)
}

// Accuracy draws the validation accuracies in percent.
func Accuracy(recs []hyperat.Record, r Run) ([]byte, error) {
	var clean, robust, collapsed plotter.XYs
	for _, rec := range recs {
		if rec.Kind != "val" || !finite(rec.ValClean) || !finite(rec.ValRobust) {
			continue
		}
		x := float64(rec.It)
		clean = append(clean, plotter.XY{X: x, Y: 100 * rec.ValClean})
		robust = append(robust, plotter.XY{X: x, Y: 100 * rec.ValRobust})
		if rec.Collapsed {
			collapsed = append(collapsed, plotter.XY{X: x, Y: 100 * rec.ValClean})
		}
	}
	title := "validation accuracy"
	if len(collapsed) > 0 {
		title += fmt.Sprintf(": collapsed (clean accuracy near chance) at iteration %g", collapsed[0].X)
	}
	p := newPlot(title, "accuracy (%)")
	lg := newLegend()
	robustName := r.Robust
	if robustName == "" {
		robustName = "robust"
	}
	// clean is drawn wider, so that it shows around robust where they are equal
	for _, s := range []struct {
		name  string
		xys   plotter.XYs
		c     color.RGBA
		width vg.Length
	}{{"clean", clean, cleanColor, 2}, {robustName, robust, robustColor, 1}} {
		if len(s.xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return nil, err
		}
		l.LineStyle = draw.LineStyle{Color: s.c, Width: 2 * s.width}
		pts.GlyphStyle = draw.GlyphStyle{Color: s.c, Radius: 2 * s.width, Shape: draw.CircleGlyph{}}
		p.Add(l, pts)
		lg.Add(s.name, l, pts)
	}
	if r.Classes > 0 {
		ch := rule{at: 100 / float64(r.Classes), style: draw.LineStyle{Color: markColor, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(1), vg.Points(3)}}}
		p.Add(ch)
		lg.Add("chance", ch)
	}
	if len(collapsed) > 0 {
		s, err := plotter.NewScatter(collapsed)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: collapseColor, Radius: vg.Points(7), Shape: thickCross{width: vg.Points(3)}}
		p.Add(s)
		lg.Add("collapse", s)
	}
	p.Y.Min, p.Y.Max = 0, 100
	addWarmup(p, &lg, r)
	setX(p, recs, r)
	return render(p, lg)
}

func newPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "iteration"
	p.Y.Label.Text = ylabel
	g := plotter.NewGrid()
	g.Vertical.Color = color.Gray{Y: 220}
	g.Horizontal.Color = color.Gray{Y: 220}
	p.Add(g)
	return p
}

func newLegend() plot.Legend {
	lg := plot.NewLegend()
	lg.Top, lg.Left = true, true
	lg.Padding = vg.Points(3)
	return lg
}

// addWarmup marks the iteration at which eps reaches its target.
func addWarmup(p *plot.Plot, lg *plot.Legend, r Run) {
	if r.WarmupEnd <= 0 || (r.Iters > 0 && r.WarmupEnd >= float64(r.Iters)) {
		return
	}
	w := rule{vertical: true, at: r.WarmupEnd, style: draw.LineStyle{Color: markColor, Width: vg.Points(1.5), Dashes: []vg.Length{vg.Points(6), vg.Points(4)}}}
	p.Add(w)
	lg.Add("eps warm-up ends", w)
}

// setX spans the x axis from 0 to the planned iterations, or to the last
// recorded one when that is further.
func setX(p *plot.Plot, recs []hyperat.Record, r Run) {
	hi := float64(r.Iters)
	for _, rec := range recs {
		x := float64(rec.It)
		if rec.Kind == "step" {
			x++
		}
		hi = math.Max(hi, x)
	}
	if hi <= 0 {
		hi = 1
	}
	p.X.Min, p.X.Max = 0, hi
}

// render draws the plot on the left and its legend in a strip on the right.
func render(p *plot.Plot, lg plot.Legend) ([]byte, error) {
	c := vgimg.NewWith(vgimg.UseWH(Width*vg.Inch/dpi, Height*vg.Inch/dpi), vgimg.UseDPI(dpi))
	dc := draw.New(c)
	strip := vg.Length(2.1) * vg.Inch
	p.Draw(draw.Crop(dc, vg.Points(4), -strip, vg.Points(4), -vg.Points(6)))
	lg.Draw(draw.Crop(dc, dc.Max.X-strip+vg.Points(10), 0, 0, -vg.Points(30)))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rule is a line across the whole data area: vertical at x = at, or
// horizontal at y = at.
type rule struct {
	vertical bool
	at       float64
	style    draw.LineStyle
}

func (l rule) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	if l.vertical {
		x := trX(l.at)
		c.StrokeLine2(l.style, x, c.Min.Y, x, c.Max.Y)
		return
	}
	y := trY(l.at)
	c.StrokeLine2(l.style, c.Min.X, y, c.Max.X, y)
}

func (l rule) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(l.style, c.Min.X, y, c.Max.X, y)
}

// thickCross is an X glyph with its own line width, bold enough to be seen
// over the accuracy lines.
type thickCross struct{ width vg.Length }

func (g thickCross) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	ls := draw.LineStyle{Color: sty.Color, Width: g.width}
	r := sty.Radius * vg.Length(math.Sqrt2/2)
	c.StrokeLine2(ls, pt.X-r, pt.Y-r, pt.X+r, pt.Y+r)
	c.StrokeLine2(ls, pt.X-r, pt.Y+r, pt.X+r, pt.Y-r)
}

// trendWindow is the running mean's length: about a 25th of the run, at
// most 50.
func trendWindow(iters, n int) int {
	if iters <= 0 {
		iters = n
	}
	k := (iters + 12) / 25
	if k < 3 {
		return 1
	}
	return min(k, 50)
}

// runningMean averages each point with the k-1 before it (fewer at the start).
func runningMean(xys plotter.XYs, k int) plotter.XYs {
	out := make(plotter.XYs, len(xys))
	sum := 0.0
	for i, pt := range xys {
		sum += pt.Y
		n := i + 1
		if i >= k {
			sum -= xys[i-k].Y
			n = k
		}
		out[i] = plotter.XY{X: pt.X, Y: sum / float64(n)}
	}
	return out
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func minY(xys plotter.XYs) float64 {
	m := math.Inf(1)
	for _, p := range xys {
		m = math.Min(m, p.Y)
	}
	return m
}

func maxY(xys plotter.XYs) float64 {
	m := math.Inf(-1)
	for _, p := range xys {
		m = math.Max(m, p.Y)
	}
	return m
}
