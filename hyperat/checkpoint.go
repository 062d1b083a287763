package hyperat

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// Snapshot is what a checkpoint keeps of a trainer, so that a resumed run
// continues exactly: where the run is, with what configuration, and every
// trained tensor with the optimizer's moments, named "param/<name>",
// "adam_m/<name>" and "adam_v/<name>" for each of the trainer's Names.
type Snapshot struct {
	Iteration int
	AdamStep  int
	Config    Config
	Tensors   map[string]*graph.Tensor
}

// Snapshot returns the trainer's state. Its tensors are the trainer's own:
// save them before the next step.
func (t *Trainer) Snapshot() Snapshot {
	ts := map[string]*graph.Tensor{}
	for i, n := range t.Names {
		ts["param/"+n] = t.Params[i]
		ts["adam_m/"+n] = t.Opt.M[i]
		ts["adam_v/"+n] = t.Opt.V[i]
	}
	return Snapshot{Iteration: t.It, AdamStep: t.Opt.Step, Config: t.Cfg, Tensors: ts}
}

// Restore sets parameters, optimizer and iteration from a snapshot, which
// must hold every tensor of the trainer at its size; the trainer must have
// been made with the snapshot's configuration. On an error nothing changes.
func (t *Trainer) Restore(s Snapshot) error {
	type pair struct{ dst, src *graph.Tensor }
	var copies []pair
	for i, n := range t.Names {
		for _, d := range []struct {
			key string
			dst *graph.Tensor
		}{{"param/" + n, t.Params[i]}, {"adam_m/" + n, t.Opt.M[i]}, {"adam_v/" + n, t.Opt.V[i]}} {
			src, ok := s.Tensors[d.key]
			if !ok {
				return fmt.Errorf("checkpoint lacks %s", d.key)
			}
			if len(src.F) != len(d.dst.F) {
				return fmt.Errorf("checkpoint tensor %s has %d values, want %d", d.key, len(src.F), len(d.dst.F))
			}
			copies = append(copies, pair{d.dst, src})
		}
	}
	for _, c := range copies {
		copy(c.dst.F, c.src.F)
	}
	t.It, t.Opt.Step = s.Iteration, s.AdamStep
	return nil
}
