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
// CPU time in all, the part of it outside parallel calls, and the
// parallel calls it made.
type Segment struct {
	Label   string
	CPU     int64 // nanoseconds, parallel calls included
	Serial  int64
	Regions []kernels.TraceRegion
}

// NewSegment is the segment of CPU time cpu with the given parallel calls,
// each task's time less clock, the cost of reading the clock (measured as
// the time of an empty task), and the serial part less the clock readings
// that mark the segment and its calls.
func NewSegment(label string, cpu int64, regions []kernels.TraceRegion, clock int64) Segment {
	s := Segment{Label: label, Serial: cpu - clock*int64(1+len(regions))}
	for _, r := range regions {
		s.Serial -= r.End - r.Start
		r.Tasks = slices.Clone(r.Tasks)
		for i, x := range r.Tasks {
			r.Tasks[i] = max(x-clock, 0)
			s.CPU += r.Tasks[i]
		}
		s.Regions = append(s.Regions, r)
	}
	s.Serial = max(s.Serial, 0)
	s.CPU += s.Serial
	return s
}

// Least merges runs of the same computation, segment by segment, task by
// task: the least time of each, the one least disturbed by other work on
// the machine. It reports false when the runs did not split alike.
func Least(runs [][]Segment) ([]Segment, bool) {
	out := slices.Clone(runs[0])
	for _, r := range runs[1:] {
		if len(r) != len(out) {
			return runs[0], false
		}
		for i := range out {
			a, b := &out[i], &r[i]
			if len(a.Regions) != len(b.Regions) {
				return runs[0], false
			}
			a.Serial = min(a.Serial, b.Serial)
			a.CPU = a.Serial
			regions := make([]kernels.TraceRegion, len(a.Regions))
			for j := range regions {
				ta, tb := a.Regions[j].Tasks, b.Regions[j].Tasks
				if len(ta) != len(tb) {
					return runs[0], false
				}
				regions[j] = a.Regions[j]
				regions[j].Tasks = make([]int64, len(ta))
				for k := range ta {
					regions[j].Tasks[k] = min(ta[k], tb[k])
					a.CPU += regions[j].Tasks[k]
				}
			}
			a.Regions = regions
		}
	}
	return out, true
}

// Predict is the time of the segment on p cores: its serial part, then each
// parallel call scheduled on min(tasks, p) goroutines.
func (s *Segment) Predict(p int, d Dispatch) float64 {
	t := float64(s.Serial)
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
