package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMicroBatchCost measures what running a HyperAT iteration in smaller
// micro-batches costs, which is what a memory budget makes the planner do:
// one PGD-AT iteration of HYPERAT_MICROCOST_BATCH (16) images with
// HYPERAT_MICROCOST_STEPS (2) attack steps, in micro-batches of each size
// of HYPERAT_MICROCOST_MICROS (1,2,4,8,16), on the model HYPERAT_MICROCOST
// names ("fixture" for the MNIST ViT). For each it prints the programs'
// planned memory and the iteration's CPU time (the process's, which other
// load moves far less than wall time) and wall time, the best of
// HYPERAT_MICROCOST_ROUNDS (2) rounds over the sizes in turn. The other way
// to bound memory, recomputing each block's activations in the backward,
// costs a second forward: about a third more work at any batch.
func TestMicroBatchCost(t *testing.T) {
	path := os.Getenv("HYPERAT_MICROCOST")
	if path == "" {
		t.Skip("HYPERAT_MICROCOST is not set")
	}
	eps := 8.0 / 255
	if path == "fixture" {
		path, eps = benchModel(t), 0.1
	}
	batch := envInt(t, "HYPERAT_MICROCOST_BATCH", 16)
	steps := envInt(t, "HYPERAT_MICROCOST_STEPS", 2)
	rounds := envInt(t, "HYPERAT_MICROCOST_ROUNDS", 2)
	var micros []int
	for _, f := range strings.Split(envOr("HYPERAT_MICROCOST_MICROS", "1,2,4,8,16"), ",") {
		m, err := strconv.Atoi(f)
		if err != nil || m < 1 || m > batch {
			t.Fatalf("HYPERAT_MICROCOST_MICROS: %q is not a micro-batch size from 1 to %d", f, batch)
		}
		micros = append(micros, m)
	}
	type result struct {
		mem       int64
		cpu, wall time.Duration
	}
	best := map[int]*result{}
	for r := 0; r < rounds; r++ {
		for _, m := range micros {
			cfg := HyperATConfig([]string{"pgdat"}, eps, batch)
			cfg.Micro, cfg.Steps = m, steps
			tr, err := NewTrainer(path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			f, err := tr.Footprint(m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Step(); err != nil { // compiles the programs
				t.Fatal(err)
			}
			c0, t0 := ProcessCPU(), time.Now()
			if _, err := tr.Step(); err != nil {
				t.Fatal(err)
			}
			res := result{f.Programs, ProcessCPU() - c0, time.Since(t0)}
			if b := best[m]; b == nil {
				best[m] = &res
			} else {
				b.cpu, b.wall = min(b.cpu, res.cpu), min(b.wall, res.wall)
			}
			tr = nil
			runtime.GC()
		}
	}
	ref := best[micros[len(micros)-1]]
	fmt.Printf("PGD-AT iteration of %d images, %d attack steps, %s, GOMAXPROCS %d\n", batch, steps, path, runtime.GOMAXPROCS(0))
	fmt.Printf("%6s %14s %12s %12s %16s\n", "micro", "programs MiB", "CPU s/iter", "wall s/iter", "CPU vs the last")
	for _, m := range micros {
		b := best[m]
		fmt.Printf("%6d %14.0f %12.2f %12.2f %15.2fx\n", m, float64(b.mem)/(1<<20), b.cpu.Seconds(), b.wall.Seconds(),
			b.cpu.Seconds()/ref.cpu.Seconds())
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
