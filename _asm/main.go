// Command _asm generates the amd64 assembly of package kernels: the sgemm
// micro-kernels for AVX-512 and AVX2+FMA and the CPUID probe used for
// dispatch, with their Go declarations, the plain-Go twin of every kernel
// and the tables that list the kernels of each variant.
//
// Run it from this directory (go generate in package kernels does):
//
//	go run . -out ../kernels/sgemm_amd64.s -stubs ../kernels/stubs_amd64.go \
//		-twins ../kernels/twins.go -tables ../kernels/tables_amd64.go -pkg kernels
package main

import (
	"flag"
	"log"

	. "github.com/mmcloughlin/avo/build"
)

var (
	twinsOut  = flag.String("twins", "", "write the plain-Go twins of the kernels to `file`")
	tablesOut = flag.String("tables", "", "write the tables of kernels per variant to `file`")
)

func main() {
	flag.Parse()
	ConstraintExpr("amd64,!purego")

	genCPUID()
	for _, f := range families {
		for _, s := range f.specs {
			switch s.isa {
			case isaAVX512:
				genKernelAVX512(s)
			case isaAVX2:
				genKernelAVX2(s)
			}
		}
	}
	for _, s := range packSpecs {
		genPackB(s)
		genPackBTrans(s)
	}
	Generate()

	if *twinsOut != "" {
		if err := writeTwins(*twinsOut); err != nil {
			log.Fatal(err)
		}
	}
	if *tablesOut != "" {
		if err := writeTables(*tablesOut); err != nil {
			log.Fatal(err)
		}
	}
}
