// Command _asm generates the amd64 assembly of package vmath: the AVX-512 and
// AVX2+FMA kernels of Exp, Gelu, GeluGrad, SoftmaxRows, Arith and the LayerNorm rows (dispatch
// uses package kernels' CPU probe), with their Go declarations, the plain-Go twin of every
// kernel and the Go declarations of the constants both share.
//
// Run it from this directory (go generate in package vmath does):
//
//	go run . -out ../vmath_amd64.s -stubs ../stubs_amd64.go \
//		-twins ../twins.go -consts ../consts.go -pkg vmath
//
// With -fit it prints the minimax fit behind the exp polynomial instead.
package main

import (
	"flag"
	"log"

	. "github.com/mmcloughlin/avo/build"
)

var (
	twinsOut  = flag.String("twins", "", "write the plain-Go twins of the kernels to `file`")
	constsOut = flag.String("consts", "", "write the Go declarations of the constants to `file`")
	fit       = flag.Bool("fit", false, "print the fit of the exp polynomial and exit")
)

func main() {
	flag.Parse()
	if *fit {
		printExpFit()
		return
	}
	ConstraintExpr("amd64,!purego")

	genConstTables()
	for _, k := range kernels {
		k.avx512(k)
	}
	for _, k := range kernels {
		k.avx2(k)
	}
	Generate()

	if *twinsOut != "" {
		if err := writeTwins(*twinsOut); err != nil {
			log.Fatal(err)
		}
	}
	if *constsOut != "" {
		if err := writeConsts(*constsOut); err != nil {
			log.Fatal(err)
		}
	}
}
