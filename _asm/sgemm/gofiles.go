package sgemm

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/hyperat/hyperat/_asm/gen"
)

// WriteTwins writes the plain-Go twin of every kernel tile: the same
// signature and doc comment, computed by sgemmTileGo.
func WriteTwins(path string) error {
	var b bytes.Buffer
	b.WriteString(gen.Header())
	b.WriteString("package kernels\n\n")
	seen := map[string]bool{}
	for _, f := range families {
		for _, s := range f.specs {
			name := s.twinName()
			if seen[name] {
				continue
			}
			seen[name] = true
			gen.WriteDoc(&b, s.doc(name))
			fmt.Fprintf(&b, "%s {\n", strings.Replace(kernelSignature, "func", "func "+name, 1))
			fmt.Fprintf(&b, "\tvar acc [%d * %d]float32\n", s.mr, s.nr())
			fmt.Fprintf(&b, "\t%sTileGo(acc[:], %d, %d, k, a, rs, ks, b, c, ldc, alpha, beta, bias, rows, cols)\n}\n\n", s.prefix(), s.mr, s.nr())
		}
	}
	for _, s := range packSpecs {
		name := fmt.Sprintf("packB%dGo", s.nr)
		gen.WriteDoc(&b, packBDoc(name, s.nr))
		fmt.Fprintf(&b, `func %s(dst, src []float32, ldb, rows, panels, pstride int) {
	for p := 0; p < rows; p++ {
		for q := 0; q < panels; q++ {
			d, s := q*pstride+p*%[2]d, p*ldb+q*%[2]d
			copy(dst[d:d+%[2]d], src[s:s+%[2]d])
		}
	}
}

`, name, s.nr)
		name = fmt.Sprintf("packBTrans%dGo", s.nr)
		gen.WriteDoc(&b, packBTransDoc(name, s.nr))
		fmt.Fprintf(&b, `func %s(dst, src []float32, ldb, k16, cols int) {
	for j := 0; j < %[2]d; j++ {
		if j >= cols {
			for p := 0; p < k16; p++ {
				dst[p*%[2]d+j] = 0
			}
			continue
		}
		row := src[j*ldb : j*ldb+k16]
		for p, x := range row {
			dst[p*%[2]d+j] = x
		}
	}
}

`, name, s.nr)
	}
	writeBF16PackTwins(&b)
	return gen.WriteGo(path, &b)
}

// writeBF16PackTwins writes the plain-Go twins of the bfloat16 packers.
func writeBF16PackTwins(b *bytes.Buffer) {
	gen.WriteDoc(b, packRowsBF16Doc("packRowsBF16Go"))
	b.WriteString(`func packRowsBF16Go(dst, src []float32, ld, rows, n, pitch int) {
	d := pairsOf(dst)
	for r := 0; r < rows; r++ {
		row, out := src[r*ld:r*ld+n], d[r*pitch:r*pitch+(n+1)/2]
		for t := range out {
			hi := float32(0)
			if 2*t+1 < n {
				hi = row[2*t+1]
			}
			out[t] = pairBF16(row[2*t], hi)
		}
	}
}

`)
	gen.WriteDoc(b, packPairsBF16Doc("packPairsBF16Go"))
	b.WriteString(`func packPairsBF16Go(dst, src []float32, ld, rows, cols, chunks, pstride, tstride int) {
	d := pairsOf(dst)
	for c := 0; c < chunks; c++ {
		for t := 0; t < (rows+1)/2; t++ {
			out := d[c/2*pstride+c%2*16+t*tstride:][:16]
			for j := range out {
				lo, hi := float32(0), float32(0)
				if col := 16*c + j; col < cols {
					lo = src[2*t*ld+col]
					if 2*t+1 < rows {
						hi = src[(2*t+1)*ld+col]
					}
				}
				out[j] = pairBF16(lo, hi)
			}
		}
	}
}

`)
	gen.WriteDoc(b, packBTransBF16Doc("packBTransBF16Go", 32))
	b.WriteString(`func packBTransBF16Go(dst, src []float32, ldb, k32, cols int) {
	d := pairsOf(dst)
	for j := 0; j < 32; j++ {
		if j >= cols {
			for t := 0; t < k32/2; t++ {
				d[t*32+j] = 0
			}
			continue
		}
		row := src[j*ldb : j*ldb+k32]
		for t := 0; t < k32/2; t++ {
			d[t*32+j] = pairBF16(row[2*t], row[2*t+1])
		}
	}
}

`)
}

// WriteTables writes, for each variant, its kernels from the tallest tile
// down, each with its twin.
func WriteTables(path string) error {
	var b bytes.Buffer
	b.WriteString(gen.Header())
	b.WriteString("//go:build amd64 && !purego\n\npackage kernels\n\n")
	for _, f := range families {
		fmt.Fprintf(&b, "var %s = []tileKernel{\n", f.table)
		for _, s := range f.specs {
			fmt.Fprintf(&b, "\t{mr: %d, kernel: %s, twin: %s},\n", s.mr, s.name(), s.twinName())
		}
		b.WriteString("}\n\n")
	}
	return gen.WriteGo(path, &b)
}
