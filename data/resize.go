package data

// Conversions from a dataset's native pixels (uint8, planar C×H×W, C = 1 or 3)
// to the model's input (float32 in [0, 1], planar c×h×w, c = 1 or 3); the
// package documentation says what they are and why. Resizing is separable:
// one pass over rows with the width's axisMap, one over columns with the
// height's, each skipped when its size does not change.

// byteToUnit maps a byte v to float32(v)/255.
var byteToUnit = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// Luma weights of ITU-R BT.601.
const (
	lumaR = 0.299
	lumaG = 0.587
	lumaB = 0.114
)

// axisMap resamples one axis of length in to length out: output o is the sum
// over k in [off[o], off[o+1]) of w[k] times input idx[k].
type axisMap struct {
	in, out int
	off     []int32
	idx     []int32
	w       []float32
}

func (m *axisMap) identity() bool { return m.in == m.out }

// newAxisMap chooses bilinear when enlarging and area when shrinking.
func newAxisMap(in, out int) *axisMap {
	m := &axisMap{in: in, out: out, off: make([]int32, out+1)}
	switch {
	case in == out:
		for o := range out {
			m.idx = append(m.idx, int32(o))
			m.w = append(m.w, 1)
			m.off[o+1] = int32(len(m.idx))
		}
	case out > in:
		// Bilinear, half-pixel centres: source position (o+0.5)*in/out - 0.5,
		// clamped at 0 below; the right neighbour is clamped at in-1.
		scale := float64(in) / float64(out)
		for o := range out {
			src := max((float64(o)+0.5)*scale-0.5, 0)
			i0 := min(int(src), in-1)
			i1 := min(i0+1, in-1)
			l1 := src - float64(i0)
			if i1 == i0 {
				m.idx = append(m.idx, int32(i0))
				m.w = append(m.w, 1)
			} else {
				m.idx = append(m.idx, int32(i0), int32(i1))
				m.w = append(m.w, float32(1-l1), float32(l1))
			}
			m.off[o+1] = int32(len(m.idx))
		}
	default:
		// Area: in units of 1/out of an input pixel, output o covers
		// [o*in, (o+1)*in) and input i covers [i*out, (i+1)*out); the weight is
		// their overlap divided by in. Integer arithmetic: exact for any ratio.
		for o := range out {
			lo, hi := int64(o)*int64(in), int64(o+1)*int64(in)
			for i := lo / int64(out); i*int64(out) < hi; i++ {
				a, b := max(lo, i*int64(out)), min(hi, (i+1)*int64(out))
				if b > a {
					m.idx = append(m.idx, int32(i))
					m.w = append(m.w, float32(float64(b-a)/float64(in)))
				}
			}
			m.off[o+1] = int32(len(m.idx))
		}
	}
	return m
}

// kind names the filter for messages.
func (m *axisMap) kind() string {
	switch {
	case m.in == m.out:
		return "unchanged"
	case m.out > m.in:
		return "bilinear"
	}
	return "area"
}

// resizePlane resamples src (inH×inW) into dst (outH×outW) with the maps mh
// (height) and mw (width); tmp must hold inH*outW values. Results are clamped
// to [0, 1].
func resizePlane(dst, src []float32, mh, mw *axisMap, tmp []float32) {
	inH, inW, outW := mh.in, mw.in, mw.out
	rows := src // inH×outW after the width pass
	if !mw.identity() {
		rows = tmp[:inH*outW]
		for y := range inH {
			s := src[y*inW : (y+1)*inW]
			r := rows[y*outW : (y+1)*outW]
			for o := range outW {
				var acc float32
				for k := mw.off[o]; k < mw.off[o+1]; k++ {
					acc += mw.w[k] * s[mw.idx[k]]
				}
				r[o] = acc
			}
		}
	}
	if mh.identity() {
		copy(dst, rows[:inH*outW])
	} else {
		for o := range mh.out {
			d := dst[o*outW : (o+1)*outW]
			clear(d)
			for k := mh.off[o]; k < mh.off[o+1]; k++ {
				wk := mh.w[k]
				r := rows[int(mh.idx[k])*outW : int(mh.idx[k]+1)*outW]
				for x, v := range r {
					d[x] += wk * v
				}
			}
		}
	}
	if mh.identity() && mw.identity() {
		return
	}
	for i, v := range dst[:mh.out*outW] {
		dst[i] = min(max(v, 0), 1)
	}
}

// converter turns native images into model inputs of one size, reusing its
// scratch buffers and axis maps; one per goroutine.
type converter struct {
	c, h, w    int // target
	mh, mw     *axisMap
	plane, tmp []float32
}

func newConverter(c, h, w int) *converter { return &converter{c: c, h: h, w: w} }

// convert writes the image pix (c×h×w bytes, planar) into dst (cv.c×cv.h×cv.w).
func (cv *converter) convert(dst []float32, pix []byte, c, h, w int) {
	plane := h * w
	if cv.mh == nil || cv.mh.in != h || cv.mh.out != cv.h {
		cv.mh = newAxisMap(h, cv.h)
	}
	if cv.mw == nil || cv.mw.in != w || cv.mw.out != cv.w {
		cv.mw = newAxisMap(w, cv.w)
	}
	same := h == cv.h && w == cv.w
	out := cv.h * cv.w
	// src returns native plane ch as floats (only when resizing).
	src := func(ch int) []float32 {
		cv.plane = grow(cv.plane, plane)
		for i, v := range pix[ch*plane : (ch+1)*plane] {
			cv.plane[i] = byteToUnit[v]
		}
		return cv.plane
	}
	resize := func(d, s []float32) {
		cv.tmp = grow(cv.tmp, h*cv.w)
		resizePlane(d, s, cv.mh, cv.mw, cv.tmp)
	}
	switch {
	case cv.c == 1 && c == 3:
		cv.plane = grow(cv.plane, plane)
		r, g, b := pix[:plane], pix[plane:2*plane], pix[2*plane:3*plane]
		for i := range plane {
			l := lumaR*byteToUnit[r[i]] + lumaG*byteToUnit[g[i]] + lumaB*byteToUnit[b[i]]
			cv.plane[i] = min(l, 1)
		}
		if same {
			copy(dst[:out], cv.plane[:plane])
		} else {
			resize(dst[:out], cv.plane)
		}
	case cv.c == 3 && c == 1:
		if same {
			for i, v := range pix[:plane] {
				dst[i] = byteToUnit[v]
			}
		} else {
			resize(dst[:out], src(0))
		}
		copy(dst[out:2*out], dst[:out])
		copy(dst[2*out:3*out], dst[:out])
	default: // same channel count
		for ch := range c {
			d := dst[ch*out : (ch+1)*out]
			if same {
				for i, v := range pix[ch*plane : (ch+1)*plane] {
					d[i] = byteToUnit[v]
				}
			} else {
				resize(d, src(ch))
			}
		}
	}
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// roundUnit16 maps a 16-bit sample to the nearest 8-bit one.
func roundUnit16(v uint32) uint8 {
	return uint8((v*255 + 32767) / 65535)
}
