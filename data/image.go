package data

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder
	_ "image/png"  // registers the PNG decoder
	"io"
)

// planar is a decoded image: c planes (1 gray, or 3 red, green, blue) of h×w bytes.
type planar struct {
	c, h, w int
	pix     []byte
}

func (p *planar) bytes() int64 { return int64(len(p.pix)) }

// isGrayModel reports whether a color model has one channel.
func isGrayModel(m color.Model) bool {
	return m == color.GrayModel || m == color.Gray16Model
}

// imageConfig reads an image's header: its size and whether it is gray. It
// refuses sizes beyond MaxSide and maxPixels before any pixel is decoded.
func imageConfig(r io.Reader, maxPixels int) (cfg image.Config, format string, err error) {
	cfg, format, err = image.DecodeConfig(r)
	if err != nil {
		if err == image.ErrFormat {
			return cfg, "", fmt.Errorf("not a PNG or JPEG image")
		}
		return cfg, format, fmt.Errorf("cannot read the %s header: %v", formatName(format), err)
	}
	if format != "png" && format != "jpeg" {
		return cfg, format, fmt.Errorf("is a %s image; only PNG and JPEG are read", format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return cfg, format, fmt.Errorf("%s image of %dx%d pixels", formatName(format), cfg.Width, cfg.Height)
	}
	if cfg.Width > MaxSide || cfg.Height > MaxSide || cfg.Width*cfg.Height > maxPixels {
		return cfg, format, fmt.Errorf("%s image of %dx%d pixels exceeds the %d accepted (and %d per side)",
			formatName(format), cfg.Width, cfg.Height, maxPixels, MaxSide)
	}
	return cfg, format, nil
}

func formatName(format string) string {
	switch format {
	case "png":
		return "PNG"
	case "jpeg":
		return "JPEG"
	case "":
		return "image"
	}
	return format
}

// decodeImage decodes a PNG or JPEG into planar bytes: one plane for gray
// images, three for everything else (alpha is dropped, not blended: the colour
// values are kept as stored, as PIL's convert("RGB") does; 16-bit samples are
// rounded to 8 bits).
func decodeImage(b []byte, maxPixels int) (*planar, error) {
	if _, format, err := imageConfig(bytes.NewReader(b), maxPixels); err != nil {
		return nil, err
	} else if img, _, err := image.Decode(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("cannot decode the %s image: %v", formatName(format), err)
	} else {
		return toPlanar(img), nil
	}
}

// toPlanar converts any decoded image to planar bytes.
func toPlanar(img image.Image) *planar {
	r := img.Bounds()
	w, h := r.Dx(), r.Dy()
	switch m := img.(type) {
	case *image.Gray:
		p := &planar{c: 1, h: h, w: w, pix: make([]byte, w*h)}
		for y := range h {
			copy(p.pix[y*w:(y+1)*w], m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):])
		}
		return p
	case *image.Gray16:
		p := &planar{c: 1, h: h, w: w, pix: make([]byte, w*h)}
		for y := range h {
			for x := range w {
				p.pix[y*w+x] = roundUnit16(uint32(m.Gray16At(r.Min.X+x, r.Min.Y+y).Y))
			}
		}
		return p
	}
	p := &planar{c: 3, h: h, w: w, pix: make([]byte, 3*w*h)}
	plane := w * h
	set := func(x, y int, cr, cg, cb uint8) {
		i := y*w + x
		p.pix[i], p.pix[plane+i], p.pix[2*plane+i] = cr, cg, cb
	}
	switch m := img.(type) {
	case *image.NRGBA:
		for y := range h {
			row := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			for x := range w {
				set(x, y, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
	case *image.RGBA:
		for y := range h {
			row := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			for x := range w {
				c := color.NRGBAModel.Convert(color.RGBA{row[4*x], row[4*x+1], row[4*x+2], row[4*x+3]}).(color.NRGBA)
				set(x, y, c.R, c.G, c.B)
			}
		}
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				c := m.YCbCrAt(r.Min.X+x, r.Min.Y+y)
				cr, cg, cb := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				set(x, y, cr, cg, cb)
			}
		}
	case *image.CMYK:
		for y := range h {
			for x := range w {
				c := m.CMYKAt(r.Min.X+x, r.Min.Y+y)
				cr, cg, cb := color.CMYKToRGB(c.C, c.M, c.Y, c.K)
				set(x, y, cr, cg, cb)
			}
		}
	case *image.Paletted:
		var table [256][3]uint8
		for i, pc := range m.Palette {
			if i >= 256 {
				break
			}
			table[i] = rgbOf(pc)
		}
		for y := range h {
			row := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			for x := range w {
				t := table[row[x]]
				set(x, y, t[0], t[1], t[2])
			}
		}
	default: // NRGBA64, RGBA64 and anything else
		for y := range h {
			for x := range w {
				t := rgbOf(img.At(r.Min.X+x, r.Min.Y+y))
				set(x, y, t[0], t[1], t[2])
			}
		}
	}
	return p
}

// rgbOf returns a colour's non-premultiplied red, green, blue as bytes, rounding
// 16-bit samples.
func rgbOf(c color.Color) [3]uint8 {
	switch v := c.(type) {
	case color.NRGBA:
		return [3]uint8{v.R, v.G, v.B}
	case color.NRGBA64:
		return [3]uint8{roundUnit16(uint32(v.R)), roundUnit16(uint32(v.G)), roundUnit16(uint32(v.B))}
	}
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return [3]uint8{roundUnit16(uint32(n.R)), roundUnit16(uint32(n.G)), roundUnit16(uint32(n.B))}
}
