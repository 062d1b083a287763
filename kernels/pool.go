package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ParallelFor calls fn on disjoint ranges [lo, hi) that together cover
// [0, n), at most Threads() (GOMAXPROCS) of them, each of nearly equal size,
// and returns when all calls have returned. The calls run concurrently on the
// calling goroutine and on the idle goroutines of a persistent pool: no
// goroutine is started per call. fn may itself call ParallelFor (the inner
// call then runs on whatever workers are idle, possibly only its caller).
//
// The ranges depend only on n and GOMAXPROCS, never on timing, so that a
// computation which writes each output from one range alone gives the same
// result at every run.
func ParallelFor(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	parts := min(n, Threads())
	if parts == 1 && tracing.Load() == nil {
		fn(0, n)
		return
	}
	r := rangeTasks.get()
	r.fn, r.n, r.parts = fn, n, parts
	runTasks(parts, parts, r)
	r.fn = nil
	rangeTasks.put(r)
}

// rangeTask adapts a ParallelFor call to the task interface.
type rangeTask struct {
	fn       func(lo, hi int)
	n, parts int
}

func (r *rangeTask) runTask(i, _ int) {
	r.fn(i*r.n/r.parts, (i+1)*r.n/r.parts)
}

var rangeTasks freeList[rangeTask]

// tasker is a computation split into numbered tasks that may run in any
// order and concurrently. slot identifies the goroutine running the task:
// 0 for the caller of runTasks, 1+i for pool worker i, so that a task can
// use buffers that the same goroutine (and so, mostly, the same core) used
// before.
type tasker interface {
	runTask(i, slot int)
}

// runTasks runs t.runTask(i, slot) for every i in [0, n) on at most threads
// goroutines: the caller and idle pool workers, in slots below threads.
// Tasks are handed out one at a time, so uneven tasks balance across
// workers.
func runTasks(n, threads int, t tasker) {
	if tr := tracing.Load(); tr != nil {
		tr.run(n, threads, t)
		return
	}
	helpers := min(n, threads) - 1
	if helpers <= 0 {
		for i := 0; i < n; i++ {
			t.runTask(i, 0)
		}
		return
	}
	startWorkers(threads - 1)
	j := jobs.get()
	j.t, j.n = t, int64(n)
	j.next.Store(0)
	// Only the first threads-1 workers, so that slots stay below threads.
	for _, w := range pool.workers.Load().list[:threads-1] {
		if helpers == 0 {
			break
		}
		if w.idle.CompareAndSwap(true, false) {
			helpers--
			j.pending.Add(1)
			j.wg.Add(1)
			w.jobs <- j
		}
	}
	j.work(0)
	// The helpers are finishing their last tasks: spin a little before
	// sleeping, since waking a sleeping goroutine costs more than the gap
	// between the phases of a product.
	for start := nanotime(); j.pending.Load() != 0 && nanotime()-start < spinNanos; {
		spinPause()
	}
	j.wg.Wait()
	for j.pending.Load() != 0 {
		spinPause() // a helper is between its two completion signals
	}
	j.t = nil
	jobs.put(j)
}

// spinNanos is how long the caller of runTasks and an idle worker spin
// before they sleep: a few times the gap between two phases of a product.
const spinNanos = 50_000

// spinPause is one step of a spin-wait.
func spinPause() {
	runtime.Gosched()
}

// nanotime returns a monotonic time in nanoseconds.
func nanotime() int64 {
	return int64(time.Since(epoch))
}

var epoch = time.Now()

// job is one runTasks call shared with the workers that help with it.
type job struct {
	t       tasker
	n       int64
	next    atomic.Int64
	pending atomic.Int32 // helpers still working
	wg      sync.WaitGroup
}

func (j *job) work(slot int) {
	for {
		i := j.next.Add(1) - 1
		if i >= j.n {
			return
		}
		j.t.runTask(int(i), slot)
	}
}

var jobs freeList[job]

// worker is a pool goroutine. idle is true while it waits for a job; a
// caller that swaps it to false owns the right to send it one job.
type worker struct {
	slot int // 1 + its index in the pool
	idle atomic.Bool
	jobs chan *job
}

func (w *worker) loop() {
	for {
		j := w.next()
		j.work(w.slot)
		// Become available before signalling completion, so that a caller
		// that starts a new call right after this one finds the worker idle.
		// pending is the last access to j: once it reaches 0 the caller may
		// reuse the job.
		w.idle.Store(true)
		j.wg.Done()
		j.pending.Add(-1)
	}
}

// next waits for the next job, spinning for a while before sleeping.
func (w *worker) next() *job {
	for start := nanotime(); nanotime()-start < spinNanos; {
		select {
		case j := <-w.jobs:
			return j
		default:
			spinPause()
		}
	}
	return <-w.jobs
}

type workerList struct{ list []*worker }

var pool struct {
	mu      sync.Mutex
	workers atomic.Pointer[workerList]
}

// startWorkers makes sure the pool has at least n workers.
func startWorkers(n int) {
	if l := pool.workers.Load(); l != nil && len(l.list) >= n {
		return
	}
	pool.mu.Lock()
	defer pool.mu.Unlock()
	var list []*worker
	if l := pool.workers.Load(); l != nil {
		list = l.list
	}
	if len(list) >= n {
		return
	}
	list = append([]*worker(nil), list...)
	for len(list) < n {
		w := &worker{slot: len(list) + 1, jobs: make(chan *job, 1)}
		w.idle.Store(true)
		go w.loop()
		list = append(list, w)
	}
	pool.workers.Store(&workerList{list: list})
}

// freeList is a mutex-guarded stack of reusable objects; unlike sync.Pool it
// keeps its objects across garbage collections, so steady-state callers do
// not allocate.
type freeList[T any] struct {
	mu    sync.Mutex
	items []*T
}

func (f *freeList[T]) get() *T {
	f.mu.Lock()
	if n := len(f.items); n > 0 {
		x := f.items[n-1]
		f.items = f.items[:n-1]
		f.mu.Unlock()
		return x
	}
	f.mu.Unlock()
	return new(T)
}

func (f *freeList[T]) put(x *T) {
	f.mu.Lock()
	f.items = append(f.items, x)
	f.mu.Unlock()
}
