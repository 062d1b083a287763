package layers_test

// Importing a model verifies its graph against the operator registry, which
// package compile fills (one definition per operator).
import _ "github.com/hyperat/hyperat/compile"
