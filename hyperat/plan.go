package hyperat

import (
	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/kernels"
	"github.com/hyperat/hyperat/model"
)

// Footprint is what running a tuning in micro-batches of Micro images adds,
// in bytes, to what the trainer holds once made (the model, the trained
// tensors, the optimizer's moments): the memory a budget must leave for it.
type Footprint struct {
	Micro int
	// Programs: the net's attack and training programs at the micro-batch's
	// size (and that of a smaller last one), one arena for all.
	Programs int64
	// Validation: the merged model's weights and its programs, and the
	// tuned weights the run writes at its end.
	Validation int64
	// Working: the batch's images and the attacks' copies of them.
	Working int64
}

// Total is the whole footprint.
func (f Footprint) Total() int64 { return f.Programs + f.Validation + f.Working }

// Footprint is the memory a run in micro-batches of b images adds, from the
// programs' planned memory (compile.Plan; compiled programs say theirs).
func (t *Trainer) Footprint(b int) (Footprint, error) {
	f := Footprint{Micro: b}
	sizes := []int{b}
	if r := t.Cfg.Batch % b; r != 0 {
		sizes = append(sizes, r)
	}
	pairs, singles := false, false
	for _, d := range t.defs {
		pairs = pairs || d.NeedsClean()
		singles = singles || !d.NeedsClean()
	}
	var arena, own int64
	add := func(m compile.Memory) {
		arena = max(arena, m.Arena)
		own += m.Own()
	}
	for _, s := range sizes {
		type prog struct {
			batch    int
			training bool
			prec     kernels.Precision
		}
		ps := []prog{{s, false, kernels.FP32}}
		if t.Cfg.AttackPrecision != kernels.FP32 {
			ps = append(ps, prog{s, false, t.Cfg.AttackPrecision})
		}
		if pairs && !t.Net.unpaired {
			ps = append(ps, prog{2 * s, true, kernels.FP32})
		}
		if singles || pairs && t.Net.unpaired {
			ps = append(ps, prog{s, true, kernels.FP32})
		}
		for _, p := range ps {
			m, err := t.Net.planProgram(p.batch, p.training, p.prec)
			if err != nil && p.batch == 2*s {
				// a model that does not run at twice the batch runs the
				// pair as two passes (see PairGrads)
				m, err = t.Net.planProgram(s, true, kernels.FP32)
			}
			if err != nil {
				return f, err
			}
			add(m)
		}
		// validation runs the original graph with merged weights as
		// constants, in float32 (see validate)
		v, err := model.PlanFootprint(t.orig, t.Net.Classes, s, kernels.FP32)
		if err != nil {
			return f, err
		}
		f.Validation = max(f.Validation, v)
	}
	f.Programs = arena + own
	weights := int64(0)
	for _, p := range t.orig.Params {
		if p.Const != nil {
			weights += 4 * int64(len(p.Const.F))
		}
	}
	// the model validated holds a merged copy of the weights; at the end the
	// tuned copy is made while the last one validated may not be collected
	f.Validation += 2 * weights
	image := 4 * int64(t.Net.C*t.Net.H*t.Net.W)
	// the batch, its micro-batch copies and examples; the attack's padded
	// input, gradient and iterate, and a garbage copy of each
	f.Working = 3*int64(t.Cfg.Batch)*image + 8*int64(b)*image
	return f, nil
}

// PlanMicro picks the micro-batch size of a run that may add avail bytes to
// what the process holds: the fewest micro-batches whose footprint fits,
// balanced (a batch of 64 that fits 50 at a time runs as two of 32). With
// not even one image fitting, it returns Micro 0 and the footprint of one.
func (t *Trainer) PlanMicro(avail int64) (Footprint, error) {
	cost := func(b int) (int64, error) {
		f, err := t.Footprint(b)
		return f.Total(), err
	}
	fit, _, err := compile.LargestBatch(avail, t.Cfg.Batch, cost)
	if err != nil {
		return Footprint{}, err
	}
	if fit == 0 {
		f, err := t.Footprint(1)
		f.Micro = 0
		return f, err
	}
	k := (t.Cfg.Batch + fit - 1) / fit
	return t.Footprint((t.Cfg.Batch + k - 1) / k)
}
