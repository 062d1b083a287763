package graph_test

// The operator registry is filled by package compile, which defines each
// operator once (arity, shape rule, kernel, gradient rule); the verifier's
// tests read the real operators.
import _ "github.com/hyperat/hyperat/compile"
