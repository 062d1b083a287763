package vmath

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/hyperat/hyperat/_asm/gen"
)

// WriteTwins writes the plain-Go twin of every kernel: the same signature
// and doc comment, with the reference loop as its body.
func WriteTwins(path string) error {
	var b bytes.Buffer
	b.WriteString(gen.Header())
	b.WriteString("package vmath\n\nimport \"math\"\n\n")
	for _, k := range kernels {
		name := k.name + "Go"
		gen.WriteDoc(&b, k.doc(name))
		fmt.Fprintf(&b, "%s {%s}\n\n", strings.Replace(k.sig, "func", "func "+name, 1), k.twin)
	}
	return gen.WriteGo(path, &b)
}
