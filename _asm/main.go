// Command _asm generates the amd64 assembly of the packages with SIMD
// kernels, chosen by -pkg, each with its Go declarations and the Go files
// that go with it:
//
//   - cpu: the CPUID and XGETBV probes of feature detection (package cpu
//     here);
//   - kernels: the sgemm micro-kernels and B packers for AVX-512 and
//     AVX2+FMA, and the bfloat16 kernels and packers for AVX512_BF16, whose
//     instructions it encodes itself (package sgemm here); -twins writes
//     their plain-Go twins, -tables the tables of kernels per variant;
//   - vmath: the AVX-512 and AVX2+FMA kernels of Exp, Gelu, GeluGrad,
//     SoftmaxRows, Arith and the LayerNorm rows (package vmath here); -twins
//     writes their plain-Go twins, -consts the Go declarations of the
//     constants both share.
//
// Run it from this directory (go generate in each package does):
//
//	go run . -out ../kernels/cpu/cpuid_amd64.s -stubs ../kernels/cpu/stubs_amd64.go -pkg cpu
//	go run . -out ../kernels/sgemm_amd64.s -stubs ../kernels/stubs_amd64.go \
//		-twins ../kernels/twins.go -tables ../kernels/tables_amd64.go -pkg kernels
//	go run . -out ../kernels/vmath/vmath_amd64.s -stubs ../kernels/vmath/stubs_amd64.go \
//		-twins ../kernels/vmath/twins.go -consts ../kernels/vmath/consts.go -pkg vmath
//
// With -fit it prints the minimax fit behind the exp polynomials of vmath
// instead.
//
// The module is separate from github.com/hyperat/hyperat so that avo stays
// out of the toolchain's dependencies.
package main

import (
	"flag"
	"log"

	"github.com/hyperat/hyperat/_asm/cpu"
	"github.com/hyperat/hyperat/_asm/sgemm"
	"github.com/hyperat/hyperat/_asm/vmath"
	. "github.com/mmcloughlin/avo/build"
)

// target is one generated package: what goes into its assembly file, and
// the writers of its other Go files by the flag that names each file.
type target struct {
	build func()
	files map[string]func(path string) error
}

var targets = map[string]target{
	"cpu": {build: cpu.Build},
	"kernels": {build: sgemm.Build, files: map[string]func(string) error{
		"twins":  sgemm.WriteTwins,
		"tables": sgemm.WriteTables,
	}},
	"vmath": {build: vmath.Build, files: map[string]func(string) error{
		"twins":  vmath.WriteTwins,
		"consts": vmath.WriteConsts,
	}},
}

// goFiles are the flags of the Go files beside the assembly, in the order
// they are written.
var goFiles = []struct{ flag, usage string }{
	{"twins", "write the plain-Go twins of the kernels to `file`"},
	{"tables", "write the tables of kernels per variant to `file` (kernels)"},
	{"consts", "write the Go declarations of the constants to `file` (vmath)"},
}

func main() {
	out := map[string]*string{}
	for _, f := range goFiles {
		out[f.flag] = flag.String(f.flag, "", f.usage)
	}
	fit := flag.Bool("fit", false, "print the fit of vmath's exp polynomials and exit")
	flag.Parse()
	if *fit {
		vmath.PrintExpFit()
		return
	}
	pkg := flag.Lookup("pkg").Value.String()
	t, ok := targets[pkg]
	if !ok {
		log.Fatalf("-pkg %q: not a package this program generates (cpu, kernels, vmath)", pkg)
	}
	for _, f := range goFiles {
		if *out[f.flag] != "" && t.files[f.flag] == nil {
			log.Fatalf("-%s: package %s has no such file", f.flag, pkg)
		}
	}

	ConstraintExpr("amd64,!purego")
	t.build()
	Generate()

	for _, f := range goFiles {
		if path := *out[f.flag]; path != "" {
			if err := t.files[f.flag](path); err != nil {
				log.Fatal(err)
			}
		}
	}
}
