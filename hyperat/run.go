package hyperat

import (
	"errors"
	"fmt"
	"math"

	"github.com/hyperat/hyperat/dist"
)

// ErrInterrupted is returned by Run when Stop closed: the current step was
// finished and a checkpoint written.
var ErrInterrupted = errors.New("interrupted; the run was checkpointed, continue it with --resume")

// Record is one entry of a run's metrics: a training step or a validation.
type Record struct {
	Kind      string  `json:"kind"` // "step" or "val"
	It        int     `json:"it"`
	Defense   string  `json:"defense,omitempty"`
	Loss      float64 `json:"loss,omitempty"`
	Eps       float64 `json:"eps,omitempty"`
	LR        float64 `json:"lr,omitempty"`
	GradNorm  float64 `json:"grad_norm,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"`
	ValClean  float64 `json:"val_clean,omitempty"`
	ValRobust float64 `json:"val_robust,omitempty"`
	Collapsed bool    `json:"collapsed,omitempty"`
}

// Store keeps what a run leaves behind: its records and its checkpoints
// (workspace.Run keeps them in a workspace).
type Store interface {
	// Append adds a record to the run's metrics.
	Append(Record) error
	// Checkpoint saves the trainer's state; the snapshot's tensors are
	// the trainer's own, valid until the next step.
	Checkpoint(Snapshot) error
}

// RunOptions control Run.
type RunOptions struct {
	Store           Store // records and checkpoints go here; nil keeps none
	CheckpointEvery int
	EvalEvery       int // validation every N iterations (0: only at the end)
	Val             []int
	ValSteps        int // PGD steps of the validation attack
	Stop            <-chan struct{}
	OnStep          func(Step)
	// OnMicro hears of every micro-batch of iteration it done (of total).
	OnMicro func(it, done, total int)
	OnVal   func(Record) // called once the record is stored
}

// discard is the Store of a run that keeps nothing.
type discard struct{}

func (discard) Append(Record) error       { return nil }
func (discard) Checkpoint(Snapshot) error { return nil }

// Collapsed reports whether validation clean accuracy sits near chance
// (below 1.5 times it), the failure METHOD.md describes.
func Collapsed(clean float64, classes int) bool { return clean < 1.5/float64(classes) }

// Run continues the run from t.It to the configured number of iterations,
// giving every record to o.Store and checkpointing into it every
// o.CheckpointEvery iterations, at the end, and when o.Stop closes.
func (t *Trainer) Run(o RunOptions) error {
	store := o.Store
	if store == nil {
		store = discard{}
	}
	t.onMicro = o.OnMicro
	defer func() { t.onMicro = nil }()
	for t.It < t.Cfg.Iters {
		s, err := t.Step()
		if err != nil {
			return err
		}
		if err := store.Append(Record{Kind: "step", It: s.It, Defense: s.Defense, Loss: s.Loss, Eps: s.Eps, LR: s.LR, GradNorm: s.GradNorm, Seconds: s.Seconds}); err != nil {
			return err
		}
		if o.OnStep != nil {
			o.OnStep(s)
		}
		if o.EvalEvery > 0 && len(o.Val) > 0 && t.It%o.EvalEvery == 0 && t.It < t.Cfg.Iters {
			r, err := t.validate(o)
			if err != nil {
				return err
			}
			if err := store.Append(r); err != nil {
				return err
			}
			if o.OnVal != nil {
				o.OnVal(r)
			}
		}
		stop := false
		select {
		case <-o.Stop:
			stop = true
		default:
		}
		if stop || (o.CheckpointEvery > 0 && t.It%o.CheckpointEvery == 0) || t.It == t.Cfg.Iters {
			if err := store.Checkpoint(t.Snapshot()); err != nil {
				return err
			}
		}
		if stop {
			return ErrInterrupted
		}
	}
	return nil
}

// validate measures the uniformly merged model (or the single LoRA, or the
// fully tuned weights) on the validation split. In a group, each process
// measures its share of the split's batches and the counts are summed: the
// same batches of the same images as one process, so the same figures.
func (t *Trainer) validate(o RunOptions) (Record, error) {
	c, err := t.MergedModel(Uniform(len(t.defs)))
	if err != nil {
		return Record{}, err
	}
	bs := t.MicroSize()
	rank, size := t.share()
	acc, err := Evaluate(c, t.data, batchShare(o.Val, bs, rank, size), bs, t.Cfg.Eps, o.ValSteps, t.Cfg.Seed)
	if err != nil {
		return Record{}, err
	}
	if size > 1 {
		counts := []float64{math.Round(acc.Clean * float64(acc.N)), math.Round(acc.Robust * float64(acc.N))}
		s, err := t.group.Step(validationStep(t.It-1), []dist.Part{{Index: rank, Stats: counts}}, size)
		if err != nil {
			return Record{}, fmt.Errorf("validation at iteration %d: %w", t.It, err)
		}
		acc = Accuracy{Clean: s.Stats[0] / float64(len(o.Val)), Robust: s.Stats[1] / float64(len(o.Val)), N: len(o.Val)}
	}
	r := Record{Kind: "val", It: t.It, ValClean: acc.Clean, ValRobust: acc.Robust}
	warm := float64(t.It) >= t.Cfg.EpsWarmup*float64(t.Cfg.Iters)
	r.Collapsed = warm && Collapsed(acc.Clean, t.Net.Classes)
	return r, nil
}

// batchShare is process rank's share of idx cut into batches of bs: batches
// rank, rank+size, ..., one after the other. Only idx's last batch is short,
// and it is last in its share, so Evaluate cuts the share into the batches
// of idx.
func batchShare(idx []int, bs, rank, size int) []int {
	if size == 1 {
		return idx
	}
	var out []int
	for lo := rank * bs; lo < len(idx); lo += size * bs {
		out = append(out, idx[lo:min(lo+bs, len(idx))]...)
	}
	return out
}
