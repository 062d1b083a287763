// Package model wraps an imported ONNX image classifier for the tools that
// run it: logits for a batch, and input gradients of any loss of the logits
// (a vector-Jacobian product), with one compiled program per batch size.
package model

import (
	"errors"
	"fmt"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
)

// Classifier runs an image classifier: input [N, C, H, W] pixels, output [N, K] logits.
type Classifier struct {
	Model   *onnximport.Model
	C, H, W int
	classes int
	fwd     map[int]*compile.Program
	vjp     map[int]*vjpProg
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

// New checks that m is an image classifier and prepares it.
func New(m *onnximport.Model) (*Classifier, error) {
	g := m.Graph
	if len(g.Inputs) != 1 {
		return nil, fmt.Errorf("not an image classifier: it has %d inputs, want one image batch", len(g.Inputs))
	}
	in := g.Inputs[0]
	if in.DType != graph.Float32 || len(in.Shape) != 4 {
		return nil, fmt.Errorf("not an image classifier: input %s is %s%v, want float32 [N, C, H, W]", in.Name, in.DType, in.Shape)
	}
	for i := 1; i < 4; i++ {
		if in.Shape[i].N <= 0 {
			return nil, fmt.Errorf("input %s%v: channel and image dims must be fixed", in.Name, in.Shape)
		}
	}
	if len(g.Outputs) < 1 {
		return nil, errors.New("model has no outputs")
	}
	c := &Classifier{Model: m, C: in.Shape[1].N, H: in.Shape[2].N, W: in.Shape[3].N,
		fwd: map[int]*compile.Program{}, vjp: map[int]*vjpProg{}}
	p, err := c.forward(1)
	if err != nil {
		return nil, err
	}
	out := p.Outputs[0].StaticShape()
	if len(out) != 2 || out[0] != 1 || out[1] < 2 || p.Outputs[0].DType != graph.Float32 {
		return nil, fmt.Errorf("not an image classifier: first output is %s%v, want float32 logits [N, classes]", p.Outputs[0].DType, out)
	}
	c.classes = out[1]
	return c, nil
}

// Classes is the number of logits.
func (c *Classifier) Classes() int { return c.classes }

// InputShape is [C, H, W].
func (c *Classifier) InputShape() []int { return []int{c.C, c.H, c.W} }

func (c *Classifier) forward(batch int) (*compile.Program, error) {
	if p, ok := c.fwd[batch]; ok {
		return p, nil
	}
	g := c.Model.Graph.Clone()
	g.Outputs = g.Outputs[:1]
	p, err := compile.Compile(g, compile.Options{Batch: batch})
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
		g := c.Model.Graph.Clone()
		g.Outputs = g.Outputs[:1]
		s := g.AddInput("logits_cotangent", graph.Float32, graph.StaticShape(batch, c.classes))
		p, err := compile.Compile(g, compile.Options{Batch: batch,
			Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: s, Wrt: []*graph.Value{g.Inputs[0]}}})
		if err != nil {
			return nil, nil, err
		}
		v = &vjpProg{p: p, x: g.Inputs[0], seed: s}
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
