package compile

import "github.com/hyperat/hyperat/graph"

// GradSpec asks for gradients of a scalar loss with respect to some values.
type GradSpec struct {
	Loss *graph.Value
	Wrt  []*graph.Value
}

func gradPass(c *compilation) error {
	if c.opts.Grad == nil {
		return nil
	}
	return nil
}
