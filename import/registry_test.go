package onnximport

// Importing verifies the graph against the operator registry, which package
// compile fills (one definition per operator); production programs link
// compile too.
import _ "github.com/hyperat/hyperat/compile"
