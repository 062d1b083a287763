// Package model wraps an imported ONNX image classifier for the tools that
// run it: logits for a batch, and input gradients of any loss of the logits
// (a vector-Jacobian product), with one compiled program per batch size.
// Inspect is the one check that a graph is such a classifier.
package model

import (
	"errors"
	"fmt"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/kernels"
)

// Shape is what Inspect finds of an image classifier.
type Shape struct {
	C, H, W int // the image input's channels, height and width
	Batch   int // the input's fixed batch size; 0 when it is symbolic
	Classes int // logits per image
}

// Inspect checks that g is an image classifier as the hyperat commands take
// one: one float32 input [N, C, H, W] with C, H and W fixed, and a first
// output of float32 logits [N, classes] with at least 2 classes. It
// compiles the graph once (at batch 1, or at the input's fixed batch) to
// infer the logits' shape. The errors say what is wrong without naming the
// file; callers prefix its path.
func Inspect(g *graph.Graph) (Shape, error) {
	s, _, err := inspect(g)
	return s, err
}

// inspect is Inspect, returning the forward program of the first output it
// compiled at s.Batch (or 1).
func inspect(g *graph.Graph) (Shape, *compile.Program, error) {
	if len(g.Inputs) != 1 {
		return Shape{}, nil, fmt.Errorf("the model has %d inputs; hyperat needs one (the images)", len(g.Inputs))
	}
	in := g.Inputs[0]
	if in.DType != graph.Float32 || len(in.Shape) != 4 || in.Shape[1].N <= 0 || in.Shape[2].N <= 0 || in.Shape[3].N <= 0 {
		return Shape{}, nil, fmt.Errorf("not an image classifier: its input %q is %s %s; hyperat needs float32 images [N, C, H, W] with C, H and W fixed",
			in.Name, in.DType, in.Shape)
	}
	if len(g.Outputs) < 1 {
		return Shape{}, nil, errors.New("the model has no outputs")
	}
	s := Shape{C: in.Shape[1].N, H: in.Shape[2].N, W: in.Shape[3].N, Batch: max(in.Shape[0].N, 0)}
	p, err := compileForward(g, max(s.Batch, 1), nil)
	if err != nil {
		return Shape{}, nil, err
	}
	out := p.Outputs[0]
	shape := out.StaticShape()
	if out.DType != graph.Float32 || len(shape) != 2 || shape[0] != max(s.Batch, 1) || shape[1] < 2 {
		return Shape{}, nil, fmt.Errorf("not an image classifier: its first output %q is %s %s; hyperat needs float32 logits [N, classes]",
			g.Outputs[0].Name, out.DType, graph.StaticShape(shape...))
	}
	s.Classes = shape[1]
	return s, p, nil
}

// compileForward compiles the graph's first output at batch, its
// activations in arena (nil: an arena of its own).
func compileForward(g *graph.Graph, batch int, arena *compile.Arena) (*compile.Program, error) {
	c, opts := forwardSpec(g, batch, arena)
	return compile.Compile(c, opts)
}

// forwardSpec is the graph and options of compileForward.
func forwardSpec(g *graph.Graph, batch int, arena *compile.Arena) (*graph.Graph, compile.Options) {
	c := g.Clone()
	c.Outputs = c.Outputs[:1]
	return c, compile.Options{Batch: batch, Arena: arena}
}

// Classifier runs an image classifier: input [N, C, H, W] pixels, output
// [N, K] logits. It is the ONNX implementation of attack.Model.
type Classifier struct {
	Model   *onnximport.Model
	C, H, W int
	batch   int // the fixed batch, or 0
	classes int
	fwd     map[int]*compile.Program
	vjp     map[int]*vjpProg
	// arena holds the activations of all the programs above: the caller
	// runs one at a time (InputGrad's seed runs no model).
	arena *compile.Arena

	// GradPrecision is that of the matrix products of InputGrad's programs
	// (compile.Options.Precision): FP32 unless a caller sets it before the
	// first InputGrad. Logits is always FP32; hyperat-eval leaves it FP32.
	GradPrecision kernels.Precision
}

type vjpProg struct {
	p    *compile.Program
	x    *graph.Value
	seed *graph.Value
}

// Load imports an ONNX classifier.
func Load(path string) (*Classifier, error) {
	m, err := onnximport.Load(path)
	if err != nil {
		return nil, err
	}
	c, err := New(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return c, nil
}

// New checks that m is an image classifier (Inspect) and prepares it.
func New(m *onnximport.Model) (*Classifier, error) {
	s, p, err := inspect(m.Graph)
	if err != nil {
		return nil, err
	}
	c := &Classifier{Model: m, C: s.C, H: s.H, W: s.W, batch: s.Batch, classes: s.Classes,
		fwd: map[int]*compile.Program{max(s.Batch, 1): p}, vjp: map[int]*vjpProg{}, arena: compile.NewArena()}
	return c, nil
}

// Classes is the number of logits.
func (c *Classifier) Classes() int { return c.classes }

// InputShape is [C, H, W].
func (c *Classifier) InputShape() []int { return []int{c.C, c.H, c.W} }

// FixedBatch is the batch size the model was exported with, or 0 when its
// batch dim is symbolic (any batch runs).
func (c *Classifier) FixedBatch() int { return c.batch }

func (c *Classifier) forward(batch int) (*compile.Program, error) {
	if p, ok := c.fwd[batch]; ok {
		return p, nil
	}
	p, err := compileForward(c.Model.Graph, batch, c.arena)
	if err != nil {
		return nil, err
	}
	c.fwd[batch] = p
	return p, nil
}

func (c *Classifier) checkInput(x *graph.Tensor) error {
	if x.DType != graph.Float32 || len(x.Shape) != 4 || x.Shape[1] != c.C || x.Shape[2] != c.H || x.Shape[3] != c.W || x.Shape[0] < 1 {
		return fmt.Errorf("input is %s%v, the model wants float32 [N, %d, %d, %d]", x.DType, x.Shape, c.C, c.H, c.W)
	}
	if c.batch > 0 && x.Shape[0] != c.batch {
		return fmt.Errorf("input is %s%v, the model has a fixed batch of %d", x.DType, x.Shape, c.batch)
	}
	return nil
}

// Logits runs the model on x [N, C, H, W]; the result is the caller's.
func (c *Classifier) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	if err := c.checkInput(x); err != nil {
		return nil, err
	}
	p, err := c.forward(x.Shape[0])
	if err != nil {
		return nil, err
	}
	outs, err := p.Run(x)
	if err != nil {
		return nil, err
	}
	return outs[0].Clone(), nil
}

// InputGrad runs the model on x, asks seed for dL/dlogits given the logits,
// and returns the logits and dL/dx. Both results are the caller's.
func (c *Classifier) InputGrad(x *graph.Tensor, seed func(logits *graph.Tensor) *graph.Tensor) (logits, grad *graph.Tensor, err error) {
	if err := c.checkInput(x); err != nil {
		return nil, nil, err
	}
	batch := x.Shape[0]
	v, ok := c.vjp[batch]
	if !ok {
		var g *graph.Graph
		var opts compile.Options
		v, g, opts = c.vjpSpec(batch)
		if v.p, err = compile.Compile(g, opts); err != nil {
			return nil, nil, err
		}
		c.vjp[batch] = v
	}
	outs, err := v.p.Forward(x)
	if err != nil {
		return nil, nil, err
	}
	logits = outs[0].Clone()
	sd := seed(logits)
	if sd == nil || len(sd.F) != len(logits.F) {
		return nil, nil, errors.New("seed must have the logits' shape")
	}
	if err := v.p.Backward(sd); err != nil {
		return nil, nil, err
	}
	return logits, v.p.Grad(v.x).Clone(), nil
}

// vjpSpec is the graph and options of InputGrad's program at batch (v
// without its program).
func (c *Classifier) vjpSpec(batch int) (*vjpProg, *graph.Graph, compile.Options) {
	return vjpSpecOf(c.Model.Graph, c.classes, batch, c.GradPrecision, c.arena)
}

func vjpSpecOf(g *graph.Graph, classes, batch int, prec kernels.Precision, arena *compile.Arena) (*vjpProg, *graph.Graph, compile.Options) {
	g = g.Clone()
	g.Outputs = g.Outputs[:1]
	s := g.AddInput("logits_cotangent", graph.Float32, graph.StaticShape(batch, classes))
	return &vjpProg{x: g.Inputs[0], seed: s}, g, compile.Options{Batch: batch, Precision: prec, Arena: arena,
		Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: s, Wrt: []*graph.Value{g.Inputs[0]}}}
}

// Footprint is the memory, in bytes, that running attacks on batches of
// batch images adds: the programs of Logits and InputGrad at that batch
// (sharing one arena), and the smaller programs an attack compiles as it
// attacks fewer images (about as much again of their own buffers).
func (c *Classifier) Footprint(batch int) (int64, error) {
	return PlanFootprint(c.Model.Graph, c.classes, batch, c.GradPrecision)
}

// PlanFootprint is the Footprint of a classifier of graph g (classes
// logits, its input gradients' products in prec) planned before the
// classifier is made: a caller that will make one later (a trainer's
// validation of merged weights) plans for it without compiling anything.
func PlanFootprint(g *graph.Graph, classes, batch int, prec kernels.Precision) (int64, error) {
	fg, opts := forwardSpec(g, batch, nil)
	f, err := compile.Plan(fg, opts)
	if err != nil {
		return 0, err
	}
	_, vg, opts := vjpSpecOf(g, classes, batch, prec, nil)
	v, err := compile.Plan(vg, opts)
	if err != nil {
		return 0, err
	}
	return max(f.Arena, v.Arena) + 2*(f.Own()+v.Own()), nil
}
