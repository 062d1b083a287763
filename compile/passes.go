package compile

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Options says what to compile.
type Options struct {
	// Batch replaces the first dim of every input when it is symbolic.
	Batch int
	// Shapes overrides input shapes by input name (all dims static).
	Shapes map[string][]int
	// Vars are parameters that stay variables: not folded, fed or updated at
	// run time (trained weights, LoRA factors). Everything else constant folds.
	Vars []*graph.Value
	// Grad, when set, adds a gradient computation (see grad.go).
	Grad *GradSpec
	// Disable names passes to skip (only optional ones); Dump names passes after
	// which the graph is printed to stderr. HYPERAT_DUMP=pass1,pass2 also dumps.
	Disable, Dump []string
	// Verify runs the graph verifier after every pass (tests turn it on).
	Verify bool
	// MaxElements, when positive, lowers the limit on the size of any one
	// tensor below the package's MaxElements (fuzzing keeps it small).
	MaxElements int
	// Arena, when set, holds the program's activations, shared with the
	// other programs compiled with it (see Arena).
	Arena *Arena
	// Precision is that of the matrix products (MatMul, Gemm and the fused
	// products, forward and gradient): kernels.FP32, the default, or
	// kernels.BF16, which rounds their operands to bfloat16 and sums in
	// float32 (see precision.go). Every other operation stays float32.
	Precision kernels.Precision
	// Borrowed are graph inputs of g that the program reads in place instead
	// of copying in: each run points them at the caller's tensor, which must
	// not change until that run (or the Backward after a Forward) ends. The
	// weights that several programs are fed alike (a trainer's attack and
	// training programs, at each batch size) then cost one copy, the
	// caller's, not one per program, and no copy per run.
	Borrowed []*graph.Value
}

// pass is one named step of the pipeline.
type pass struct {
	name     string
	fn       func(c *compilation) error
	required bool
}

// passes is the pipeline, in order.
var passes = []pass{
	{"specialize", specialize, true},           // symbolic input dims -> the batch size
	{"infer-fold", inferAndFold, true},         // static shapes; Shape/Gather/Concat... subgraphs -> constants
	{"recognize", recognize, false},            // decomposed LayerNorm and GELU -> fused operators
	{"fuse-attention", fuseAttention, false},   // softmax(alpha a b) v -> Attention(a, b, v), so the gradient is AttentionGrad
	{"grad", gradPass, true},                   // reverse mode for Options.Grad (no-op without it)
	{"infer-fold-grad", inferAndFold, true},    // shapes of the gradient nodes, fold what is constant
	{"fuse-transpose", fuseTransposes, false},  // MatMul reads transposed operands in place
	{"fuse-scale", fuseScales, false},          // scalar multiplications next to products -> their alpha
	{"fuse-lowrank", fuseLowRank, false},       // X·W + (X·T)·V -> X·(W + T·V): a LoRA branch at the weight's shape
	{"fuse-bias", fuseBias, false},             // MatMul then Add of a bias row -> MatMulBias
	{"fuse-view", fuseViews, false},            // batched products read and write heads in place
	{"dce", deadCode, false},                   // drop nodes no output needs
	{"fuse-accumulate", fuseAccumulate, false}, // LayerNormGrad's dx then an Add -> LayerNormGradAdd
	{"precision", markPrecision, true},         // products in Options.Precision (no-op for FP32)
}

// compilation is the state threaded through the passes.
type compilation struct {
	g      *graph.Graph
	opts   Options
	vars   map[*graph.Value]*graph.Value // original var -> var in the compiled graph
	isVar  map[*graph.Value]bool         // compiled-graph variables
	vmap   map[*graph.Value]*graph.Value // original value -> compiled-graph value
	grad   map[*graph.Value]*graph.Value // wrt (compiled graph) -> its gradient
	gradOf map[*graph.Value]*graph.Value // gradient value -> the value it is the gradient of
	loss   *graph.Value
	seed   *graph.Value           // the cotangent input of a vector-Jacobian program
	extra  []*graph.Value         // values kept alive besides the outputs (loss, gradients)
	source map[*graph.Tensor]bool // the source graph's constants (see measure)
	// borrowed are the compiled graph's inputs read in place (Options.Borrowed)
	borrowed map[*graph.Value]bool
}

// Compile runs the pipeline on a copy of g and binds kernels into a Program.
func Compile(g *graph.Graph, opts Options) (*Program, error) {
	c, err := lower(g, opts)
	if err != nil {
		return nil, err
	}
	return newProgram(c)
}

// lower clones g and runs the passes.
func lower(g *graph.Graph, opts Options) (*compilation, error) {
	cg, vmap := cloneWithMap(g)
	c := &compilation{g: cg, opts: opts, vars: map[*graph.Value]*graph.Value{},
		isVar: map[*graph.Value]bool{}, vmap: vmap, gradOf: map[*graph.Value]*graph.Value{},
		source: sourceConsts(g), borrowed: map[*graph.Value]bool{}}
	for _, v := range opts.Borrowed {
		nv, ok := vmap[v]
		if !ok || !slices.Contains(cg.Inputs, nv) || v.DType != graph.Float32 {
			return nil, fmt.Errorf("borrowed value %s is not a float input of this graph", v.Name)
		}
		c.borrowed[nv] = true
	}
	for _, v := range opts.Vars {
		nv, ok := vmap[v]
		if !ok || !v.IsConst() {
			return nil, fmt.Errorf("variable %s is not a constant of this graph", v.Name)
		}
		if v.DType != graph.Float32 {
			return nil, fmt.Errorf("variable %s is %s; only float weights can be variables", v.Name, v.DType)
		}
		c.vars[v] = nv
		c.isVar[nv] = true
	}
	if opts.Grad != nil && opts.Grad.Loss != nil {
		if l, ok := vmap[opts.Grad.Loss]; ok {
			c.extra = append(c.extra, l) // keep the loss alive through dead-code removal
		}
	}
	dump := map[string]bool{}
	for _, d := range append(append([]string{}, opts.Dump...), strings.Split(os.Getenv("HYPERAT_DUMP"), ",")...) {
		dump[d] = true
	}
	off := map[string]bool{}
	for _, d := range opts.Disable {
		off[d] = true
	}
	for _, p := range passes {
		if off[p.name] && !p.required {
			continue
		}
		if err := p.fn(c); err != nil {
			return nil, err
		}
		if opts.Verify {
			if err := c.g.Verify(); err != nil {
				return nil, fmt.Errorf("after pass %s: %v", p.name, err)
			}
		}
		if dump[p.name] {
			fmt.Fprintf(os.Stderr, "== after %s ==\n%s", p.name, c.g)
		}
	}
	return c, nil
}

// cloneWithMap clones g and returns the map from old values to new ones.
func cloneWithMap(g *graph.Graph) (*graph.Graph, map[*graph.Value]*graph.Value) {
	c, m, _ := g.CloneMapped()
	return c, m
}

// specialize gives every input a static shape.
func specialize(c *compilation) error {
	for _, in := range c.g.Inputs {
		if s, ok := c.opts.Shapes[in.Name]; ok {
			if in.Shape != nil && len(s) != len(in.Shape) {
				return fmt.Errorf("input %s: shape %v has rank %d, the model wants %v", in.Name, s, len(s), in.Shape)
			}
			for i, d := range in.Shape {
				if d.N >= 0 && d.N != s[i] {
					return fmt.Errorf("input %s: shape %v does not match the model's %v", in.Name, s, in.Shape)
				}
			}
			in.Shape = graph.StaticShape(s...)
			continue
		}
		if in.Shape == nil {
			return fmt.Errorf("input %s has no shape in the model; pass its shape", in.Name)
		}
		for i, d := range in.Shape {
			if d.N >= 0 {
				continue
			}
			if i != 0 || c.opts.Batch <= 0 {
				return fmt.Errorf("input %s: dim %d (%s) is symbolic; only the batch dim can be", in.Name, i, in.Shape)
			}
			in.Shape[i] = graph.Dim{N: c.opts.Batch}
		}
	}
	return nil
}

// MaxElements bounds the size of any one tensor (2 GiB of float32), so a
// corrupt model fails with an error instead of exhausting memory.
const MaxElements = 1 << 29

// tooLarge reports whether a shape holds more than limit elements (without
// overflowing on absurd dims).
func tooLarge(shape []int, limit int) bool {
	n := 1
	for _, d := range shape {
		if d > limit {
			return true
		}
		n *= d
		if n > limit {
			return true
		}
	}
	return false
}

// inferAndFold walks the nodes in order, infers each output's dtype and static
// shape, and evaluates nodes whose inputs are all constants. Variables are
// detached from their data first so that nothing folds through them.
func inferAndFold(c *compilation) error {
	for _, v := range c.vars {
		if v.Const != nil {
			v.Shape = graph.StaticShape(v.Const.Shape...)
			v.DType = v.Const.DType
		}
	}
	isVar := c.isVar
	limit := MaxElements
	if l := c.opts.MaxElements; l > 0 && l < limit {
		limit = l
	}
	var kept []*graph.Node
	for _, n := range c.g.Nodes {
		d, err := defOf(n)
		if err != nil {
			return err
		}
		allConst := true
		for _, in := range n.Inputs {
			if in == nil {
				continue
			}
			if in.Shape == nil {
				return nodeError(n, "input %s has no shape", in.Name)
			}
			if !in.IsConst() || isVar[in] {
				allConst = false
			}
		}
		if err := safeInfer(d, n); err != nil {
			return err
		}
		for _, o := range n.Outputs {
			if s, ok := o.Shape.Static(); ok && tooLarge(s, limit) {
				return nodeError(n, "output %s of shape %v is larger than the engine's limit of %d elements", o.Name, s, limit)
			}
		}
		if outputsConst(n) {
			continue // the shape alone decided the result (Shape, Size)
		}
		if !allConst || d.kernel == nil {
			kept = append(kept, n)
			continue
		}
		if err := fold(n, d); err != nil {
			return err
		}
	}
	c.g.Nodes = kept
	return nil
}

// safeInfer runs an operator's shape inference; a malformed node that the
// rule did not anticipate becomes an error naming it instead of a crash.
func safeInfer(d *opDef, n *graph.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = nodeError(n, "malformed: %v", r)
		}
	}()
	return atNode(n, d.infer(n))
}

func outputsConst(n *graph.Node) bool {
	for _, o := range n.Outputs {
		if !o.IsConst() {
			return false
		}
	}
	return true
}

// fold evaluates a node on constant inputs.
func fold(n *graph.Node, d *opDef) (err error) {
	k, err := d.kernel(n)
	if err != nil {
		return atNode(n, err)
	}
	ins := make([]*graph.Tensor, len(n.Inputs))
	for i, in := range n.Inputs {
		if in != nil {
			ins[i] = in.Const
		}
	}
	outs := make([]*graph.Tensor, len(n.Outputs))
	for i, o := range n.Outputs {
		outs[i] = graph.NewTensor(o.DType, o.StaticShape())
	}
	defer func() {
		if r := recover(); r != nil {
			err = nodeError(n, "%v", r)
		}
	}()
	k(ins, outs)
	for i, o := range n.Outputs {
		o.Const = outs[i]
	}
	return nil
}

// deadCode keeps only the nodes that graph outputs (and gradients) depend
// on. A kept node whose operator has a prune hook may then drop the work of
// outputs nobody reads.
func deadCode(c *compilation) error {
	live := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		live[o] = true
	}
	isLive := func(v *graph.Value) bool { return live[v] }
	var kept []*graph.Node
	for i := len(c.g.Nodes) - 1; i >= 0; i-- {
		n := c.g.Nodes[i]
		used := false
		for _, o := range n.Outputs {
			if live[o] {
				used = true
			}
		}
		if !used {
			continue
		}
		kept = append(kept, n)
		if d := defs[n.Op]; d != nil && d.prune != nil {
			d.prune(n, isLive)
		}
		for _, in := range n.Inputs {
			if in != nil {
				live[in] = true
			}
		}
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	c.g.Nodes = kept
	return nil
}
