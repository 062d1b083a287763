package app

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/dist"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/internal/sysmem"
	"github.com/hyperat/hyperat/workspace"
)

// Data-parallel tuning: --workers N processes, worker 0 the coordinator.
// Every worker computes its share of each iteration's micro-batches and the
// group (package dist) sums the contributions in micro-batch order, so every
// worker takes the same step and the run is the one a single process makes
// with the same micro-batches, bit for bit. Worker 0 alone decides where the
// run starts (it reads the workspace, resumes or starts over) and tells the
// others when they join; it alone writes the workspace.

// jobIndexEnv is where a Kubernetes Indexed Job puts a pod's index.
const jobIndexEnv = "JOB_COMPLETION_INDEX"

// groupArgs are the command line's data-parallel flags.
type groupArgs struct {
	workers, worker int
	coordinator     string
	timeout         time.Duration
}

// defineGroupFlags adds the data-parallel flags to hyperat-tune's.
func defineGroupFlags(c *cli.Command, g *groupArgs) *string {
	f := c.Flags
	f.IntVar(&g.workers, "workers", 1, "")
	worker := f.String("worker", "", "")
	f.StringVar(&g.coordinator, "coordinator", "", "")
	f.DurationVar(&g.timeout, "peer-timeout", 10*time.Minute, "")
	return worker
}

// check checks the data-parallel flags; the worker's index defaults to
// $JOB_COMPLETION_INDEX. A group of one ignores --coordinator (a Job
// scaled down to one pod keeps its command line).
func (g *groupArgs) check(worker string) error {
	from := "--worker"
	if worker == "" {
		if worker = os.Getenv(jobIndexEnv); worker != "" {
			from = "$" + jobIndexEnv
		}
	}
	if worker != "" {
		i, err := strconv.Atoi(worker)
		if err != nil || strconv.Itoa(i) != worker {
			return cli.Usagef("%s %q: want a whole number from 0", from, worker)
		}
		g.worker = i
	}
	switch {
	case g.workers < 1:
		return cli.Usagef("--workers %d: must be at least 1", g.workers)
	case g.worker < 0 || g.worker >= g.workers:
		return cli.Usagef("%s %d: with --workers %d the workers are numbered 0 to %d", from, g.worker, g.workers, g.workers-1)
	case g.workers > 1 && worker == "":
		return cli.Usagef("--workers %d needs this worker's number: --worker I or $%s", g.workers, jobIndexEnv)
	case g.workers > 1 && g.coordinator == "":
		return cli.Usagef("--workers %d needs --coordinator HOST:PORT, where worker 0 listens", g.workers)
	case g.timeout <= 0:
		return cli.Usagef("--peer-timeout %v: must be positive", g.timeout)
	}
	return nil
}

// hello is worker 0's word to the others when they join: the configuration
// to run (the command line's, or the resumed checkpoint's, with the
// micro-batch size worker 0 chose) and the checkpoint to start from.
type hello struct {
	Config     hyperat.Config `json:"config"`
	Iteration  int            `json:"iteration"`
	Checkpoint string         `json:"checkpoint,omitempty"` // tensor file; none: a new run
}

// runIdentity names what every worker must share to compute the same
// numbers: the kernels, the command line's settings that change the result
// or the group's work (all but where the files are and how much memory this
// worker has), the model and the data. Joining with another identity is
// refused.
func (a *tuneArgs) runIdentity(modelSHA string, view *data.View, train, val []int) (string, error) {
	cfg := a.line
	first := train[:min(len(train), 64)]
	images, err := listSHA256(view, first, 16)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	labels := view.D.Labels()
	y := make([]int, len(labels))
	for i, l := range labels {
		y[i] = int(l)
	}
	hashInts(h, y)
	hashInts(h, train)
	hashInts(h, val)
	b, err := json.Marshal(struct {
		Config                      hyperat.Config
		Micro, Workers              int
		ValSteps, EvalEvery         int
		Merge, Start, Model, Images string
	}{cfg, a.micro, a.group.workers, a.valSteps, a.evalEvery, a.merge, a.startMode(), modelSHA, images})
	if err != nil {
		return "", err
	}
	h.Write(b)
	return kernelsVariant() + "; settings " + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// startMode is how the command line starts the run.
func (a *tuneArgs) startMode() string {
	switch {
	case a.resumeOrStart:
		return "resume-or-start"
	case a.resume:
		return "resume"
	case a.force:
		return "force"
	}
	return "new"
}

// leadGroup forms the group as worker 0, telling the others the
// configuration and the checkpoint (st, when resumed) to start from. It
// returns nil alone, or when no step is left to take (the others, if any
// are restarted then, find the run at its end and stop).
func (a *tuneArgs) leadGroup(c *cli.Command, t *hyperat.Trainer, st *workspace.State, id string) (*dist.Group, error) {
	if a.group.workers == 1 || t.It >= t.Cfg.Iters {
		return nil, nil
	}
	if k := len(hyperat.MicroBatches(t.Cfg.Batch, t.MicroSize())); k < a.group.workers {
		return nil, fmt.Errorf("--workers %d: an iteration has %d micro-batches of %d images (batch %d) and each worker needs one; give at most %d workers, or a smaller --micro-batch",
			a.group.workers, k, t.MicroSize(), t.Cfg.Batch, k)
	}
	h := hello{Config: t.Cfg, Iteration: t.It}
	if a.resume {
		h.Checkpoint = st.Tensors
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Stdout, "group     worker 0 of %d: waiting for the others at %s (timeout %v) ...\n", a.group.workers, a.group.coordinator, a.group.timeout)
	g, err := dist.Join(dist.Config{Rank: 0, Size: a.group.workers, Addr: a.group.coordinator, Run: id, Timeout: a.group.timeout}, b)
	if err != nil {
		return nil, a.groupErr(err, -1)
	}
	share := (len(hyperat.MicroBatches(t.Cfg.Batch, t.MicroSize())) + a.group.workers - 1) / a.group.workers
	fmt.Fprintf(c.Stdout, "group     all %d workers joined; each computes up to %d micro-batches per iteration, the gradients summed in order\n", a.group.workers, share)
	return g, nil
}

// tuneWorker is hyperat-tune on a worker other than 0: it joins worker 0,
// runs the configuration and from the checkpoint worker 0 names, and writes
// nothing.
func (a *tuneArgs) tuneWorker(c *cli.Command, ws *workspace.Workspace, d *tuneData) error {
	if done, err := a.runAtEnd(c, ws); err != nil || done {
		return err
	}
	id, err := a.runIdentity(ws.Source.SHA256, d.view, d.train, d.val)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "group     worker %d of %d: joining worker 0 at %s (timeout %v) ...\n", a.group.worker, a.group.workers, a.group.coordinator, a.group.timeout)
	g, err := dist.Join(dist.Config{Rank: a.group.worker, Size: a.group.workers, Addr: a.group.coordinator, Run: id, Timeout: a.group.timeout}, nil)
	if err != nil {
		return a.groupErr(err, -1)
	}
	defer g.Close()
	var h hello
	if err := json.Unmarshal(g.Hello, &h); err != nil {
		return fmt.Errorf("worker 0's word at joining does not decode: %v", err)
	}
	t, err := hyperat.NewTrainer(d.model, h.Config, d.view, d.train)
	if err != nil {
		return err
	}
	if err := a.fitsWorker(c, t); err != nil {
		return err
	}
	if h.Checkpoint != "" {
		st, err := workspace.ReadState(a.ws)
		if err != nil {
			return err
		}
		if st.Tensors != h.Checkpoint || st.Iteration != h.Iteration {
			return fmt.Errorf("%s: the checkpoint is %s at iteration %d, worker 0 resumes %s at iteration %d: do the workers share one workspace volume?",
				a.ws, st.Tensors, st.Iteration, h.Checkpoint, h.Iteration)
		}
		if err := workspace.LoadCheckpoint(a.ws, st, t); err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "resume    from iteration %d of %d (worker 0's checkpoint)\n", t.It, t.Cfg.Iters)
	}
	t.SetGroup(g)
	if err := t.Prepare(); err != nil {
		return err
	}
	stop, release := interrupted()
	defer release()
	prog := newProgress(c.Stdout, t.Cfg.Iters, t.It)
	err = t.Run(hyperat.RunOptions{EvalEvery: a.evalEvery, Val: d.val, ValSteps: a.valSteps,
		Stop: stop, OnStep: prog.step, OnMicro: prog.micro})
	prog.done()
	switch {
	case errors.Is(err, hyperat.ErrInterrupted):
		return fmt.Errorf("worker %d interrupted at iteration %d of %d; restart every worker with --resume-or-start", a.group.worker, t.It, t.Cfg.Iters)
	case err != nil:
		return a.groupErr(err, -1)
	}
	fmt.Fprintf(c.Stdout, "done      worker %d took its share of %d iterations; worker 0 writes the result\n", a.group.worker, t.Cfg.Iters)
	return nil
}

// fitsWorker checks that worker 0's micro-batches fit this worker's memory
// budget (it plans nothing itself: every worker must use worker 0's size).
func (a *tuneArgs) fitsWorker(c *cli.Command, t *hyperat.Trainer) error {
	budget, _, err := memoryBudget(c, a.maxMemory)
	if err != nil {
		return err
	}
	f, err := t.Footprint(t.MicroSize())
	if err != nil {
		return err
	}
	if room := sysmem.Room(budget); f.Total() > room {
		return fmt.Errorf("worker 0's micro-batches of %d need about %s, this worker's budget leaves %s: give every worker the same --max-memory and memory",
			t.MicroSize(), sysmem.Format(f.Total()), sysmem.Format(room))
	}
	sayMicro(c, t, f, sysmem.InUse())
	return nil
}

// runAtEnd reports, for --resume-or-start on a worker other than 0, whether
// the workspace holds this run with every step taken (the Job restarted
// this worker after the others finished): then it has nothing to do.
func (a *tuneArgs) runAtEnd(c *cli.Command, ws *workspace.Workspace) (bool, error) {
	if !a.resumeOrStart {
		return false, nil
	}
	st, err := workspace.ReadState(a.ws)
	if err != nil || st.ModelSHA256 != ws.Source.SHA256 || settingsDiffer(st.Config, a.line, a.micro) != "" || st.Iteration < st.Config.Iters {
		return false, nil
	}
	fmt.Fprintf(c.Stdout, "done      the run in %s has taken its %d iterations; worker 0 writes the result\n", a.ws, st.Iteration)
	return true, nil
}

// settingsDiffer names the settings in which a checkpoint's configuration
// differs from the command line's (the micro-batch size only when micro,
// --micro-batch, is given), or is empty.
func settingsDiffer(saved, line hyperat.Config, micro int) string {
	if micro == 0 {
		saved.Micro, line.Micro = 0, 0
	} else {
		line.Micro = micro
	}
	var diff []string
	sv, lv := reflect.ValueOf(saved), reflect.ValueOf(line)
	for i := range sv.NumField() {
		if !reflect.DeepEqual(sv.Field(i).Interface(), lv.Field(i).Interface()) {
			diff = append(diff, sv.Type().Field(i).Name)
		}
	}
	return strings.Join(diff, ", ")
}

// groupErr says what a lost worker means for the run: the others stop, and
// every worker restarted resumes from the last checkpoint. it is the
// checkpoint's iteration when known (-1: not).
func (a *tuneArgs) groupErr(err error, it int) error {
	if !errors.Is(err, dist.ErrPeerLost) {
		return err
	}
	msg := fmt.Sprintf("worker %d of %d: %v", a.group.worker, a.group.workers, err)
	if it >= 0 {
		msg += fmt.Sprintf("; the last checkpoint is at iteration %d", it)
	}
	return errors.New(msg + "; restart every worker with --resume-or-start to resume from the last checkpoint")
}
