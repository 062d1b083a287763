package hyperat

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/hyperat/hyperat/internal/sysmem"
)

// peakMemory runs f and returns the most memory the process held meanwhile
// as the Go runtime's memory limit counts it (everything mapped and not
// given back), sampled every millisecond.
func peakMemory(f func()) int64 {
	debug.FreeOSMemory()
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	read := func() int64 {
		metrics.Read(s)
		return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
	}
	peak := read()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return max(peak, read())
		case <-tick.C:
			peak = max(peak, read())
		}
	}
}

// The planner keeps a run (two iterations of 64 images with TRADES' stacked
// pass, and a validation) under a budget that the whole batch at once
// exceeds, measured: the process's memory, sampled while it runs.
func TestPlannerKeepsTheRunUnderItsBudget(t *testing.T) {
	m, view := mnistFixture(t)
	cfg := DefaultConfig()
	cfg.Defenses, cfg.Batch, cfg.Steps, cfg.Iters, cfg.Eps = []string{"trades"}, 64, 1, 2, 0.1
	run := func(budget int64, plan bool) (int64, int) {
		tr, err := NewTrainer(m, cfg, view, indices(640))
		if err != nil {
			t.Fatal(err)
		}
		if budget == 0 {
			// the budget: what the process holds, and what micro-batches
			// of 16 add, with the fifth the command leaves to the collector
			f, err := tr.Footprint(16)
			if err != nil {
				t.Fatal(err)
			}
			b := (sysmem.InUse() + f.Total()) * 5 / 4
			runtime.KeepAlive(tr)
			return b, 0
		}
		if plan {
			f, err := tr.PlanMicro(sysmem.Room(budget))
			if err != nil {
				t.Fatal(err)
			}
			tr.Cfg.Micro = f.Micro
		}
		defer debug.SetMemoryLimit(sysmem.Limit(budget))
		var runErr error
		peak := peakMemory(func() {
			runErr = tr.Run(RunOptions{EvalEvery: 1, Val: indices(64), ValSteps: 1})
		})
		if runErr != nil {
			t.Fatal(runErr)
		}
		return peak, tr.MicroSize()
	}
	budget, _ := run(0, false)
	planned, micro := run(budget, true)
	whole, _ := run(budget, false)
	t.Logf("budget %s: planned micro-batches of %d peaked at %s, the whole batch at %s",
		sysmem.Format(budget), micro, sysmem.Format(planned), sysmem.Format(whole))
	if micro < 1 || micro >= 64 {
		t.Fatalf("the planner chose micro-batches of %d", micro)
	}
	if planned > budget {
		t.Errorf("the planned run held %s, over its budget of %s", sysmem.Format(planned), sysmem.Format(budget))
	}
	if whole <= budget {
		t.Errorf("the whole batch held %s, under the budget of %s: the test does not test", sysmem.Format(whole), sysmem.Format(budget))
	}
}
