package hyperat

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hyperat/hyperat/fsx"
)

// ErrInterrupted is returned by Run when Stop closed: the current step was
// finished and a checkpoint written.
var ErrInterrupted = errors.New("interrupted; the run was checkpointed, continue it with --resume")

// MetricsFile, in RunOptions.Dir, holds one Record per line.
const MetricsFile = "metrics.jsonl"

// Record is one line of metrics.jsonl: a training step or a validation.
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

// RunOptions control Run.
type RunOptions struct {
	Dir             string // checkpoints and metrics go here
	ModelSHA256     string
	CheckpointEvery int
	EvalEvery       int // validation every N iterations (0: only at the end)
	Val             []int
	ValSteps        int // PGD steps of the validation attack
	Stop            <-chan struct{}
	OnStep          func(Step)
	OnVal           func(Record) // called once the record is in metrics.jsonl
}

// Collapsed reports whether validation clean accuracy sits near chance
// (below 1.5 times it), the failure METHOD.md describes.
func Collapsed(clean float64, classes int) bool { return clean < 1.5/float64(classes) }

// Run continues the run from t.It to the configured number of iterations,
// appending to metrics.jsonl in dir (lines past the restored iteration, left
// by an interrupted process, are dropped first).
func (t *Trainer) Run(o RunOptions) error {
	path := filepath.Join(o.Dir, MetricsFile)
	if err := truncateMetrics(path, t.It); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	write := func(r Record) error {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		return nil
	}
	for t.It < t.Cfg.Iters {
		s, err := t.Step()
		if err != nil {
			return err
		}
		if err := write(Record{Kind: "step", It: s.It, Defense: s.Defense, Loss: s.Loss, Eps: s.Eps, LR: s.LR, GradNorm: s.GradNorm, Seconds: s.Seconds}); err != nil {
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
			if err := write(r); err != nil {
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
			if err := t.SaveCheckpoint(o.Dir, o.ModelSHA256); err != nil {
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
// fully tuned weights) on the validation split.
func (t *Trainer) validate(o RunOptions) (Record, error) {
	c, err := t.MergedModel(Uniform(len(t.defs)))
	if err != nil {
		return Record{}, err
	}
	acc, err := Evaluate(c, t.data, o.Val, t.Cfg.Batch, t.Cfg.Eps, o.ValSteps, t.Cfg.Seed)
	if err != nil {
		return Record{}, err
	}
	r := Record{Kind: "val", It: t.It, ValClean: acc.Clean, ValRobust: acc.Robust}
	warm := float64(t.It) >= t.Cfg.EpsWarmup*float64(t.Cfg.Iters)
	r.Collapsed = warm && Collapsed(acc.Clean, t.Net.Classes)
	return r, nil
}

// truncateMetrics keeps the records of iterations before it.
func truncateMetrics(path string, it int) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	var keep [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue // a torn last line
		}
		if (r.Kind == "step" && r.It < it) || (r.Kind == "val" && r.It <= it) {
			keep = append(keep, append([]byte{}, sc.Bytes()...))
		}
	}
	f.Close()
	var out []byte
	for _, l := range keep {
		out = append(append(out, l...), '\n')
	}
	return fsx.WriteFile(path, out)
}
