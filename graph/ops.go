package graph

import "fmt"

// OpInfo is what the IR knows about an operator: its arity.
type OpInfo struct {
	MinIn, MaxIn   int // MaxIn < 0: variadic
	MinOut, MaxOut int // MaxOut < 0: any number (Split)
}

// Ops is the operator registry that Verify reads: ONNX operators in their
// newest form, plus the project's own that passes insert. It is filled by
// DefineOp, which package compile calls once per operator from the one
// definition that also holds the operator's shape rule, kernel and
// gradient rule; it is empty in a program that does not link compile.
// Read it; do not write it.
var Ops = map[string]OpInfo{}

// DefineOp registers an operator's arity. It panics on a name registered
// twice or an arity that admits no node.
func DefineOp(name string, info OpInfo) {
	if _, dup := Ops[name]; dup {
		panic("graph: operator " + name + " is registered twice")
	}
	if name == "" || info.MinIn < 0 || (info.MaxIn >= 0 && info.MaxIn < info.MinIn) ||
		info.MinOut < 1 || (info.MaxOut >= 0 && info.MaxOut < info.MinOut) {
		panic(fmt.Sprintf("graph: operator %q has an invalid arity %+v", name, info))
	}
	Ops[name] = info
}

// OpDomain is the domain the project's own operators are exported under.
const OpDomain = "hyperat"
