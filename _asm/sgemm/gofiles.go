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
			gen.WriteDoc(&b, kernelDoc(name, s.mr, s.nr()))
			fmt.Fprintf(&b, "%s {\n", strings.Replace(kernelSignature, "func", "func "+name, 1))
			fmt.Fprintf(&b, "\tvar acc [%d * %d]float32\n", s.mr, s.nr())
			fmt.Fprintf(&b, "\tsgemmTileGo(acc[:], %d, %d, k, a, rs, ks, b, c, ldc, alpha, beta, rows, cols)\n}\n\n", s.mr, s.nr())
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
	return gen.WriteGo(path, &b)
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
