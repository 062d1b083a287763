package bench

import (
	"slices"

	"github.com/hyperat/hyperat/kernels"
)

// Core scaling: what a run would take on P cores, from one run whose work
// split was made for P cores but whose tasks ran one after another, each
// timed alone (kernels.Trace). The model: the steps of a program run one
// after another; a step's work outside its parallel calls is serial; each
// parallel call hands its tasks out in order to whichever goroutine is free
// first (greedy list scheduling, what runTasks does), and costs Dispatch
// on top when it uses more than one goroutine.

// Dispatch is the cost of a parallel call on top of its tasks' work: Base
// for waking the first helper and waiting for the last, PerHelper for each
// further helper the caller hands the call to.
type Dispatch struct {
	Base, PerHelper float64 // nanoseconds
}

// Segment is the work of one step (or of the code between programs): its
// CPU time in all, and the parallel calls it made.
type Segment struct {
	Label   string
	CPU     int64 // nanoseconds, parallel calls included
	Regions []kernels.TraceRegion
}

// Serial is the part of the segment's CPU time outside its parallel calls.
func (s *Segment) Serial() int64 {
	t := s.CPU
	for _, r := range s.Regions {
		for _, x := range r.Tasks {
			t -= x
		}
	}
	return max(t, 0)
}

// Predict is the time of the segment on p cores: its serial part, then each
// parallel call scheduled on min(tasks, p) goroutines.
func (s *Segment) Predict(p int, d Dispatch) float64 {
	t := float64(s.Serial())
	for _, r := range s.Regions {
		t += Schedule(r.Tasks, min(r.Threads, p), d)
	}
	return t
}

// Schedule is the time of one parallel call whose tasks are handed out in
// order to threads goroutines, each taking the next task when it is free.
func Schedule(tasks []int64, threads int, d Dispatch) float64 {
	if len(tasks) == 0 {
		return 0
	}
	threads = max(1, min(threads, len(tasks)))
	if threads == 1 {
		var t float64
		for _, x := range tasks {
			t += float64(x)
		}
		return t
	}
	free := make([]float64, threads)
	for _, x := range tasks {
		i := 0
		for j := range free {
			if free[j] < free[i] {
				i = j
			}
		}
		free[i] += float64(x)
	}
	return slices.Max(free) + d.Base + d.PerHelper*float64(threads-2)
}
