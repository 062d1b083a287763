package app

import (
	"fmt"
	"time"

	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/internal/sysmem"
)

// memoryBudget is --max-memory, or by default a share of the memory
// available now; it says on the terminal which, and sets the Go runtime's
// limit by it (returning the previous one, for restoreLimit).
func memoryBudget(c *cli.Command, flag string) (budget, previous int64, err error) {
	if flag != "" {
		if budget, err = sysmem.Parse(flag); err != nil {
			return 0, 0, cli.Usagef("--max-memory: %v", err)
		}
		fmt.Fprintf(c.Stdout, "memory    up to %s (--max-memory)\n", sysmem.Format(budget))
	} else {
		var how string
		if budget, how, err = sysmem.Default(); err != nil {
			return 0, 0, err
		}
		fmt.Fprintf(c.Stdout, "memory    up to %s: %s; --max-memory to choose\n", sysmem.Format(budget), how)
	}
	return budget, sysmem.Limit(budget), nil
}

// planMicro sets the run's micro-batch size: want (--micro-batch) when
// given, else the largest the budget holds, at most the batch's share of one
// of workers so that each has one (a resumed run keeps its checkpoint's when
// that fits); it says what it chose. A budget that cannot hold the size, or
// one image, is an error, before any work.
func planMicro(c *cli.Command, t *hyperat.Trainer, budget int64, resume bool, want, workers int) error {
	held := sysmem.InUse()
	room := sysmem.Room(budget)
	if want > 0 || resume && t.Cfg.Micro > 0 {
		if want > 0 {
			t.Cfg.Micro = want
		}
		f, err := t.Footprint(t.MicroSize())
		if err != nil {
			return err
		}
		if f.Total() <= room {
			sayMicro(c, t, f, held)
			return nil
		}
		if want > 0 {
			return fmt.Errorf("--micro-batch %d needs about %s besides the %s held, more than the budget of %s; give a smaller one or more --max-memory",
				want, sysmem.Format(f.Total()), sysmem.Format(held), sysmem.Format(budget))
		}
		fmt.Fprintf(c.Stdout, "note: the checkpoint's micro-batches of %d do not fit the budget; the run goes on in smaller ones (its result differs from an uninterrupted run's by float32 rounding)\n", t.MicroSize())
	}
	f, err := t.PlanMicro(room)
	if err != nil {
		return err
	}
	if f.Micro == 0 {
		return fmt.Errorf("a memory budget of %s cannot hold even one image per micro-batch: the model and the trainer hold %s, and one image needs %s more (the budget keeps a fifth for the collector); give --max-memory more",
			sysmem.Format(budget), sysmem.Format(held), sysmem.Format(f.Total()))
	}
	if share := (t.Cfg.Batch + workers - 1) / workers; f.Micro > share {
		if f, err = t.Footprint(share); err != nil {
			return err
		}
	}
	t.Cfg.Micro = f.Micro
	sayMicro(c, t, f, held)
	return nil
}

func sayMicro(c *cli.Command, t *hyperat.Trainer, f hyperat.Footprint, held int64) {
	how := fmt.Sprintf("the whole batch of %d at once", t.Cfg.Batch)
	if k := len(hyperat.MicroBatches(t.Cfg.Batch, t.MicroSize())); k > 1 {
		how = fmt.Sprintf("%d micro-batches of up to %d per batch of %d, their gradients accumulated", k, t.MicroSize(), t.Cfg.Batch)
	}
	fmt.Fprintf(c.Stdout, "memory    %s: about %s (programs %s, validation %s, images %s) besides the %s held\n",
		how, sysmem.Format(f.Total()), sysmem.Format(f.Programs), sysmem.Format(f.Validation), sysmem.Format(f.Working), sysmem.Format(held))
}

// startCheck is how many validation images checkStart looks at: enough to
// tell a model at chance from one that is not.
const startCheck = 256

// checkStart measures the model's clean accuracy before tuning and says so
// when it is at chance: such a model has not learned its classes, and a run
// that ends at chance then did not collapse. It reports whether it was.
func checkStart(c *cli.Command, t *hyperat.Trainer, view *data.View, val []int) (bool, error) {
	if len(val) == 0 {
		return false, nil
	}
	val = val[:min(len(val), startCheck)]
	start := time.Now()
	cl, err := t.MergedModel(hyperat.Uniform(len(t.Cfg.Defenses)))
	if err != nil {
		return false, err
	}
	acc, err := hyperat.Evaluate(cl, view, val, t.MicroSize(), t.Cfg.Eps, 0, t.Cfg.Seed)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(c.Stdout, "start     clean accuracy %.1f%% on %d validation images before tuning (%s)\n", 100*acc.Clean, len(val), time.Since(start).Round(100*time.Millisecond))
	if !hyperat.Collapsed(acc.Clean, t.Net.Classes) {
		return false, nil
	}
	fmt.Fprintf(c.Stdout, "note: the model is at chance before tuning (%.1f%%, chance %.1f%%): it has not learned these classes, and adversarial tuning does not teach them; fine-tune it on them first. The run goes on.\n",
		100*acc.Clean, 100/float64(t.Net.Classes))
	return true, nil
}
