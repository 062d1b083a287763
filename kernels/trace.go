package kernels

import (
	"runtime"
	"sync/atomic"
)

// Trace records how work is split over cores, for a model of what more
// cores would give (bench's core-scaling simulation). While one is
// installed with StartTrace, every split is made as if Threads cores ran
// it, yet all tasks run one after another on the calling goroutine, each
// timed by Clock alone: each task's cost is its own work, whatever the
// real number of cores or the machine's load. Outside a trace the hot path
// pays one atomic load per parallel call.
type Trace struct {
	// Threads is the number of cores the work is split for.
	Threads int
	// Clock returns the CPU time of the running thread, in nanoseconds (the
	// caller locks its goroutine to its thread).
	Clock func() int64
	// Regions lists the parallel calls in the order they ran.
	Regions []TraceRegion

	inTask bool
}

// TraceRegion is one parallel call: tasks that may run at once, ended by
// a barrier.
type TraceRegion struct {
	Start   int64   // Clock when the call began
	End     int64   // Clock when its last task had returned
	Tasks   []int64 // each task's CPU time, in the order they are handed out
	Threads int     // the goroutines the call may use (at most Trace.Threads)
}

var tracing atomic.Pointer[Trace]

// StartTrace installs t until StopTrace. Only one goroutine may run kernels
// meanwhile.
func StartTrace(t *Trace) { tracing.Store(t) }

// StopTrace removes the installed trace.
func StopTrace() { tracing.Store(nil) }

// Threads is the number of cores work is split for: GOMAXPROCS, or a
// trace's Threads while one is installed.
func Threads() int {
	if t := tracing.Load(); t != nil {
		return t.Threads
	}
	return runtime.GOMAXPROCS(0)
}

// run runs the tasks of a runTasks call one by one, timing each. A call
// made inside a task (nested) runs untimed: its cost is its task's.
func (t *Trace) run(n, threads int, tk tasker) {
	if t.inTask {
		for i := 0; i < n; i++ {
			tk.runTask(i, 0)
		}
		return
	}
	r := TraceRegion{Start: t.Clock(), Tasks: make([]int64, n), Threads: min(n, threads)}
	t.inTask = true
	for i := 0; i < n; i++ {
		c0 := t.Clock()
		tk.runTask(i, min(i, threads-1))
		r.Tasks[i] = t.Clock() - c0
	}
	t.inTask = false
	r.End = t.Clock()
	t.Regions = append(t.Regions, r)
}
