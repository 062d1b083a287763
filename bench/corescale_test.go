package bench

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/kernels"
)

// clockCost is the least time of reading ThreadClock, measured by trace.
var clockCost int64

// coreCounts are the machines the simulation predicts.
var coreCounts = coreCountsFromEnv()

// TestCoreScaling predicts the speed-up of a HyperAT iteration on the MNIST
// fixture (PGD-AT, batch 64) and of ViT-B/16's forward plus input gradient
// (batch 8, when HYPERAT_VITB names the model) on 1 to 64 cores, and checks
// the 2-core prediction against a real run on this machine. It runs when
// HYPERAT_CORESCALE is set (to mnist or vitb for one of the two):
//
//	HYPERAT_CORESCALE=1 [HYPERAT_VITB=vit_b_16.onnx] go test ./bench -run CoreScaling -v -timeout 1h
//
// HYPERAT_CORESCALE_REPS sets the traced runs per core count (3),
// HYPERAT_CORESCALE_CORES more core counts than 1,2,16,64 (all of
// 1,2,4,8,16,32,64 when unset), and
// HYPERAT_CORESCALE_DUMP=TEXT prints the parallel calls of the first steps
// whose label contains TEXT, at 64 cores.
//
// See docs/ENGINE.md, "On more cores".
func TestCoreScaling(t *testing.T) {
	if os.Getenv("HYPERAT_CORESCALE") == "" {
		t.Skip("HYPERAT_CORESCALE is not set")
	}
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	d := measureDispatch()
	fmt.Printf("dispatch: %.0f ns per parallel call, %.0f ns per further helper (least of many, GOMAXPROCS 2)\n", d.Base, d.PerHelper)
	fmt.Printf("load average: %s\n", loadAverage())

	which := os.Getenv("HYPERAT_CORESCALE")
	if which != "vitb" {
		tr, err := NewTrainer(benchModel(t), HyperATConfig([]string{"pgdat"}, 0.1, 64))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
		step := func() error { _, err := tr.Step(); return err }
		runs := simulate(t, "MNIST ViT, HyperAT iteration (PGD-AT, batch 64)", tr.Programs(), step, d)
		checkTwoCores(t, runs, step, d)
		checkProducts(t, d)
	}
	if p := os.Getenv("HYPERAT_VITB"); p != "" && which != "mnist" {
		prog, run := vitbInputGrad(t, p, 8)
		simulate(t, "ViT-B/16, forward + input gradient (batch 8)", []*compile.Program{prog}, run, d)
	}
}

// tracedRun is one run of a computation with its work split for a number of
// cores, cut into segments at the steps of its programs.
type tracedRun struct {
	cores    int
	segments []Segment
	progs    map[string]int // program label: runs
}

// trace runs f once on this goroutine's thread with the work split for
// cores, every task timed alone.
func trace(progs []*compile.Program, cores int, f func() error) (*tracedRun, error) {
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// No collection while tracing: its assists would count as the work of
	// whichever step allocated (the trace's own records).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	clockCost = int64(1 << 62)
	for i := 0; i < 1000; i++ {
		c0 := ThreadClock()
		clockCost = min(clockCost, ThreadClock()-c0)
	}
	tr := &kernels.Trace{Threads: cores, Clock: ThreadClock}
	run := &tracedRun{cores: cores, progs: map[string]int{}}
	type mark struct {
		label  string
		clock  int64
		region int
	}
	marks := []mark{{label: "outside programs"}}
	for k, p := range progs {
		steps := p.StepTimes()
		prog := fmt.Sprintf("program %d (%d steps)", k, len(steps))
		p.Hook(func(i int) {
			m := mark{label: "outside programs", clock: ThreadClock(), region: len(tr.Regions)}
			if i < len(steps) {
				m.label = prog + "\t" + stepLabel(steps[i].Node)
				if i == 0 {
					run.progs[prog]++
				}
			}
			marks = append(marks, m)
		})
	}
	defer func() {
		for _, p := range progs {
			p.Hook(nil)
		}
	}()
	kernels.StartTrace(tr)
	marks[0].clock = ThreadClock()
	err := f()
	marks = append(marks, mark{clock: ThreadClock(), region: len(tr.Regions)})
	kernels.StopTrace()
	for i := 0; i+1 < len(marks); i++ {
		a, b := marks[i], marks[i+1]
		run.segments = append(run.segments, NewSegment(a.label, b.clock-a.clock, tr.Regions[a.region:b.region], clockCost))
	}
	return run, err
}

// stepLabel is a step's operator and the shapes of its inputs.
func stepLabel(n *graph.Node) string {
	var s []string
	for _, in := range n.Inputs {
		if in != nil {
			s = append(s, fmt.Sprint(in.StaticShape()))
		}
	}
	return n.Op + " " + strings.Join(s, " ")
}

// simulate traces f at every core count and prints the predictions: in all,
// by operator, and the steps that limit the speed-up at 64 cores.
func simulate(t *testing.T, name string, progs []*compile.Program, f func() error, d Dispatch) map[int]*tracedRun {
	reps := 3
	if s := os.Getenv("HYPERAT_CORESCALE_REPS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			reps = n
		}
	}
	// The core counts take turns, so that a change in the machine's load
	// falls on all of them.
	runs := map[int]*tracedRun{}
	segs := map[int][][]Segment{}
	for i := 0; i < reps; i++ {
		for _, c := range coreCounts {
			r, err := trace(progs, c, f)
			if err != nil {
				t.Fatal(err)
			}
			runs[c] = r
			segs[c] = append(segs[c], r.segments)
		}
	}
	for _, c := range coreCounts {
		var ok bool
		if runs[c].segments, ok = Least(segs[c]); !ok {
			fmt.Printf("  (the runs at %d cores split differently: the first one is used)\n", c)
		}
	}
	t1 := total(runs[1], 1, d)
	fmt.Printf("\n%s: %.1f ms of CPU on one core (thread CPU time, least of %d runs task by task; reading the clock costs %d ns)\n", name, t1/1e6, reps, clockCost)
	for p, n := range runs[1].progs {
		fmt.Printf("  %s runs %d times\n", p, n)
	}
	fmt.Printf("  %-8s %10s %8s %10s\n", "cores", "ms", "speed-up", "efficiency")
	for _, c := range coreCounts {
		tc := total(runs[c], c, d)
		fmt.Printf("  %-8d %10.1f %8.2f %9.0f%%\n", c, tc/1e6, t1/tc, 100*t1/tc/float64(c))
	}
	d4 := Dispatch{Base: 4 * d.Base, PerHelper: 4 * d.PerHelper}
	fmt.Printf("  with dispatch 4 times as costly: speed-up %.2f at 16 cores, %.2f at 64\n", t1/total(runs[16], 16, d4), t1/total(runs[64], 64, d4))
	byOp(runs, d)
	limits(runs[64], 64, d)
	if op := os.Getenv("HYPERAT_CORESCALE_DUMP"); op != "" {
		dumpSegments(runs[64], op, 2)
	}
	return runs
}

// total is the predicted time of a traced run on cores cores.
func total(r *tracedRun, cores int, d Dispatch) float64 {
	var s float64
	for i := range r.segments {
		s += r.segments[i].Predict(cores, d)
	}
	return s
}

// byOp prints, per operator, its share of the one-core time and its
// speed-up at 16 and 64 cores.
func byOp(runs map[int]*tracedRun, d Dispatch) {
	type acc struct {
		t      [3]float64 // 1, 16, 64 cores
		serial float64
	}
	by := map[string]*acc{}
	var all float64
	for k, c := range []int{1, 16, 64} {
		for i := range runs[c].segments {
			s := &runs[c].segments[i]
			op := opOf(s.Label)
			if by[op] == nil {
				by[op] = &acc{}
			}
			x := s.Predict(c, d)
			by[op].t[k] += x
			if k == 0 {
				by[op].serial += float64(s.Serial)
				all += x
			}
		}
	}
	ops := make([]string, 0, len(by))
	for op := range by {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b string) int { return int(by[b].t[0] - by[a].t[0]) })
	fmt.Printf("  %-22s %7s %7s %7s %7s\n", "operator", "share", "serial", "x16", "x64")
	for _, op := range ops {
		a := by[op]
		if a.t[0] < all/1000 {
			continue
		}
		fmt.Printf("  %-22s %6.1f%% %6.0f%% %7.1f %7.1f\n", op, 100*a.t[0]/all, 100*a.serial/a.t[0], a.t[0]/a.t[1], a.t[0]/a.t[2])
	}
}

// opOf is the operator of a segment label.
func opOf(label string) string {
	_, s, ok := strings.Cut(label, "\t")
	if !ok {
		return label
	}
	op, _, _ := strings.Cut(s, " ")
	return op
}

// limits prints the steps that lose the most time against a perfect
// split on cores cores.
func limits(r *tracedRun, cores int, d Dispatch) {
	type loss struct {
		label        string
		cpu, at      float64
		tasks, count int
	}
	by := map[string]*loss{}
	var order []string
	for i := range r.segments {
		s := &r.segments[i]
		l := by[s.Label]
		if l == nil {
			l = &loss{label: s.Label}
			by[s.Label] = l
			order = append(order, s.Label)
		}
		l.cpu += float64(s.CPU)
		l.at += s.Predict(cores, d)
		l.count++
		for _, g := range s.Regions {
			l.tasks = max(l.tasks, len(g.Tasks))
		}
	}
	slices.SortFunc(order, func(a, b string) int {
		la, lb := by[a], by[b]
		return int((lb.at - lb.cpu/float64(cores)) - (la.at - la.cpu/float64(cores)))
	})
	var lost float64
	for _, l := range by {
		lost += l.at - l.cpu/float64(cores)
	}
	fmt.Printf("  steps losing the most at %d cores (of %.1f ms lost in all): ms at %d cores vs CPU/%d, most tasks of a call\n", cores, lost/1e6, cores, cores)
	for _, k := range order[:min(12, len(order))] {
		l := by[k]
		fmt.Printf("    %7.2f vs %6.2f ms  %4d tasks  x%-3d %s\n", l.at/1e6, l.cpu/float64(cores)/1e6, l.tasks, l.count, strings.ReplaceAll(l.label, "\t", ": "))
	}
}

// checkTwoCores runs f for real on 1 and 2 cores, alternately, and prints
// the wall and CPU times beside the predictions.
func checkTwoCores(t *testing.T, runs map[int]*tracedRun, f func() error, d Dispatch) {
	const reps = 5
	var wall, cpu [3][]float64
	for i := 0; i < reps; i++ {
		for _, c := range []int{1, 2} {
			runtime.GOMAXPROCS(c)
			w0, c0 := time.Now(), processCPU()
			if err := f(); err != nil {
				t.Fatal(err)
			}
			wall[c] = append(wall[c], float64(time.Since(w0)))
			cpu[c] = append(cpu[c], float64(processCPU()-c0))
		}
	}
	p1, p2 := total(runs[1], 1, d), total(runs[2], 2, d)
	fmt.Printf("  check on this machine (load average %s), least of %d runs each:\n", loadAverage(), reps)
	fmt.Printf("    1 core:  predicted %.1f ms, wall %.1f ms, process CPU %.1f ms\n", p1/1e6, slices.Min(wall[1])/1e6, slices.Min(cpu[1])/1e6)
	fmt.Printf("    2 cores: predicted %.1f ms, wall %.1f ms, process CPU %.1f ms\n", p2/1e6, slices.Min(wall[2])/1e6, slices.Min(cpu[2])/1e6)
	fmt.Printf("    speed-up: predicted %.2f, measured %.2f (wall), medians %.2f\n", p1/p2, slices.Min(wall[1])/slices.Min(wall[2]), median(wall[1])/median(wall[2]))
}

func median(x []float64) float64 {
	y := slices.Clone(x)
	slices.Sort(y)
	return y[len(y)/2]
}

// processCPU is the process's user and system time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// measureDispatch measures the cost of a parallel call of two trivial
// tasks on two cores above the same tasks run inline: the least of many
// calls, what an idle machine would see. The cost per further helper is that
// of handing a job to a spinning worker, bounded by a channel send and
// receive on one goroutine.
func measureDispatch() Dispatch {
	runtime.GOMAXPROCS(2)
	var sink [2]int
	fn := func(lo, hi int) { sink[lo]++ }
	least := func(f func()) float64 {
		best := time.Duration(1 << 62)
		for r := 0; r < 2000; r++ {
			t0 := time.Now()
			for i := 0; i < 10; i++ {
				f()
			}
			best = min(best, time.Since(t0))
		}
		return float64(best) / 10
	}
	par := least(func() { kernels.ParallelFor(2, fn) })
	ser := least(func() { fn(0, 1); fn(1, 2) })
	ch := make(chan *int, 1)
	var x int
	send := least(func() { ch <- &x; <-ch })
	runtime.GOMAXPROCS(1)
	return Dispatch{Base: max(par-ser, 0), PerHelper: send}
}

// vitbInputGrad compiles the forward and input gradient of the model at
// path at batch and returns the program and one run of it.
func vitbInputGrad(t *testing.T, path string, batch int) (*compile.Program, func() error) {
	if s := os.Getenv("HYPERAT_VITB_BATCH"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("HYPERAT_VITB_BATCH=%q: want a positive integer", s)
		}
		batch = n
	}
	m, err := onnximport.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	g.Outputs = g.Outputs[:1]
	in := g.Inputs[0]
	shape := in.Shape
	classes := g.Outputs[0].Shape[len(g.Outputs[0].Shape)-1].N
	seed := g.AddInput("logits_cotangent", graph.Float32, graph.StaticShape(batch, classes))
	p, err := compile.Compile(g, compile.Options{Batch: batch,
		Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: []*graph.Value{in}}})
	if err != nil {
		t.Fatal(err)
	}
	x := RandomBatch(batch, []int{shape[1].N, shape[2].N, shape[3].N}, 1)
	y := Labels(batch, classes)
	run := func() error {
		outs, err := p.Forward(x)
		if err != nil {
			return err
		}
		if err := p.Backward(CESeed(y)(outs[0])); err != nil {
			return err
		}
		return nil
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	return p, run
}

// dumpSegments prints the parallel calls of the first n steps whose label
// contains op.
func dumpSegments(r *tracedRun, op string, n int) {
	for i := range r.segments {
		s := &r.segments[i]
		if opOf(s.Label) != op && !strings.Contains(s.Label, op) {
			continue
		}
		fmt.Printf("DUMP %s cpu %d serial %d\n", s.Label, s.CPU, s.Serial)
		for _, g := range s.Regions {
			var sum, mx int64
			for _, x := range g.Tasks {
				sum += x
				mx = max(mx, x)
			}
			fmt.Printf("   region threads %d, %d tasks, sum %d, max %d, predicted %.0f\n", g.Threads, len(g.Tasks), sum, mx, Schedule(g.Tasks, 64, Dispatch{}))
		}
		if n--; n == 0 {
			return
		}
	}
}

// checkProducts checks the model on the products that take most of the
// time, one call at a time: the least wall time of many calls on 1 and 2
// cores (short calls, so that some of them find both cores free on a loaded
// machine) against the prediction from the call's traced tasks.
func checkProducts(t *testing.T, d Dispatch) {
	fmt.Printf("  products, least of many calls (load average %s):\n", loadAverage())
	fmt.Printf("    %-20s %9s %9s %9s %9s %7s %7s\n", "m n k", "pred 1", "wall 1", "pred 2", "wall 2", "pred x", "wall x")
	for _, sh := range [][3]int{{3200, 128, 512}, {3200, 512, 128}, {3200, 384, 128}, {1576, 768, 3072}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
		for i := range a {
			a[i] = float32(i%7) - 3
		}
		for i := range b {
			b[i] = float32(i%5) - 2
		}
		call := func() error { kernels.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n); return nil }
		var pred, wall [3]float64
		for _, cores := range []int{1, 2} {
			var segs [][]Segment
			var r *tracedRun
			for i := 0; i < 20; i++ {
				var err error
				if r, err = trace(nil, cores, call); err != nil {
					t.Fatal(err)
				}
				segs = append(segs, r.segments)
			}
			r.segments, _ = Least(segs)
			pred[cores] = total(r, cores, d)
			wall[cores] = math.Inf(1)
		}
		// Rounds of calls on 1 and 2 cores in turn, about 0.1 s each, so
		// that both see the quiet moments of the machine.
		calls := max(3, int(1e8/pred[1]))
		for round := 0; round < 10; round++ {
			for _, cores := range []int{1, 2} {
				runtime.GOMAXPROCS(cores)
				for i := 0; i < calls; i++ {
					t0 := time.Now()
					call()
					wall[cores] = min(wall[cores], float64(time.Since(t0)))
				}
			}
		}
		fmt.Printf("    %-20s %7.0fus %7.0fus %7.0fus %7.0fus %7.2f %7.2f\n", fmt.Sprint(m, " ", n, " ", k),
			pred[1]/1e3, wall[1]/1e3, pred[2]/1e3, wall[2]/1e3, pred[1]/pred[2], wall[1]/wall[2])
	}
}

// coreCountsFromEnv reads HYPERAT_CORESCALE_CORES; 1, 2, 16 and 64, which
// the report and the check compare, are always in.
func coreCountsFromEnv() []int {
	s := os.Getenv("HYPERAT_CORESCALE_CORES")
	if s == "" {
		return []int{1, 2, 4, 8, 16, 32, 64}
	}
	cs := []int{1, 2, 16, 64}
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil && n > 0 && !slices.Contains(cs, n) {
			cs = append(cs, n)
		}
	}
	slices.Sort(cs)
	return cs
}
