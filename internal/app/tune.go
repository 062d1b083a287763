// hyperat-tune makes the workspace's model robust with HyperAT (or a
// baseline) on a dataset, writing checkpoints, metrics and the tuned weights
// into the workspace for hyperat-export.

package app

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/internal/plots"
	"github.com/hyperat/hyperat/internal/sysmem"
	"github.com/hyperat/hyperat/kernels"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/workspace"
)

const tuneUsage = `usage: hyperat-tune --data PATH [flags]

Tunes the model of the workspace (made by hyperat-import) for adversarial
robustness and leaves the result in the workspace for hyperat-export.

  --method hyperat  HyperAT: a hypernetwork generates a LoRA per defense; one
                    defense is sampled per iteration; the LoRAs are merged
  --method lora     plain LoRA adversarial tuning with one defense (baseline)
  --method full     full fine-tuning with one defense (baseline)

flags (source of each default in brackets: paper, standard, ours):
  --data PATH          dataset folder: MNIST-family IDX files, CIFAR-10/100 binary,
                       or one subfolder of images per class; the training split is
                       read and a validation split is held out of it
  --workspace DIR      workspace folder (default .hyperat)
  --method M           hyperat, lora or full (default hyperat)
  --defenses LIST      comma-separated, from pgdat, trades, mart
                       (default pgdat,trades,mart [paper]; one for lora/full)
  --eps E              L-inf radius in pixel units, 0.1 or 8/255 (default 8/255 [standard, CIFAR])
  --steps K            inner attack steps, step size 2.5 eps/K (default 10 [standard])
  --attack-precision P bf16 or fp32: bf16 rounds the operands of the inner attacks'
                       matrix products to bfloat16 (about twice as fast on CPUs
                       with AVX512_BF16, fp32 elsewhere; as robust a result,
                       docs/RESULTS.md); training, validation and hyperat-eval
                       stay fp32 (default bf16 [ours])
  --iters N            iterations (default 600 [ours])
  --batch B            batch size (default 64 [ours])
  --max-memory SIZE    memory the run may use, such as 12G: the batch runs in
                       micro-batches that fit, their gradients accumulated
                       (default 80% of the memory available now, said at the start)
  --rank R             LoRA rank (default 8 [ours])
  --lora-alpha A       LoRA scale numerator, scale = A/R (default 16 = 2R [ours])
  --lr LR              AdamW peak learning rate, one-cycle (default 1e-3 [ours])
  --warmup F           learning-rate warm-up fraction (default 0.1 [ours])
  --eps-warmup F       fraction of iterations over which eps grows from 0 (default 0.3 [ours])
  --clip C             global gradient-norm clip, 0 to disable (default 1.0 [ours])
  --beta B             TRADES/MART regularizer weight (default 6 [papers])
  --targets LIST       adapted layer kinds (default qkv,q,k,v,proj,fc1,fc2 [paper])
  --no-head            keep the classifier head frozen (default: trained [ours])
  --merge M            uniform or adaptive (lambda on the simplex chosen on the
                       validation split) (default uniform [ours])
  --val F              validation split: fraction or count of the training split (default 0.1 [ours])
  --val-steps K        PGD steps of validation attacks (default 10 [ours])
  --eval-every N       validate every N iterations, 0 = only at the end (default 50)
  --checkpoint-every N checkpoint every N iterations (default 50)
  --micro-batch M      images per micro-batch (default: the most --max-memory holds,
                       with --workers N at most the batch's N-th part [ours]); it
                       changes the result by float32 rounding only
  --seed S             random seed (default 0)
  --resume             continue the workspace's interrupted run
  --force              start over, replacing a previous run in the workspace
  --resume-or-start    continue the workspace's run of these settings if it has
                       one, else start one: the command a Job restarts
  -h, --help           print this help

data-parallel tuning on several processes or machines (docs/CLUSTER.md):
  --workers N          processes that share every iteration's micro-batches and sum
                       their gradients in a fixed order: the result is a single
                       process's, bit for bit (default 1)
  --worker I           this process's number, 0 to N-1 (default $JOB_COMPLETION_INDEX);
                       worker 0 coordinates and alone writes the workspace, which
                       every worker reads (a shared volume)
  --coordinator H:P    where worker 0 listens (on port P) and the others reach it
  --peer-timeout D     how long a worker waits for the others: joining, and at each
                       step (default 10m); a worker that exits fails the step at once

Ctrl-C finishes the current iteration, writes a checkpoint and exits with
status 1; --resume continues exactly where it stopped.

examples:
  hyperat-tune --data fixtures/mnist --eps 0.1 --iters 300
  hyperat-tune --data cifar-10-batches-bin --eps 8/255 --method lora --defenses pgdat
  hyperat-tune --data fixtures/mnist --eps 0.1 --resume
  hyperat-tune --data /data/cifar --workers 8 --coordinator tune-0.tune:7070 --resume-or-start

exit status: 0 done, 1 an error (one line on stderr; also an interrupted run
and a result that collapsed), 2 a mistake in the command line.
`

// TuneCommand is the hyperat-tune command line.
func TuneCommand() *cli.Command { return cli.New("hyperat-tune", tuneUsage) }

// tuneArgs are hyperat-tune's command line, checked.
type tuneArgs struct {
	cfg                        hyperat.Config
	data, ws, merge            string
	val                        float64
	valSteps, evalEvery, every int // every: checkpoint interval
	resume, force              bool
	resumeOrStart              bool
	maxMemory                  string
	micro                      int            // --micro-batch (0: planned)
	line                       hyperat.Config // the command line's settings (cfg may become a checkpoint's)
	group                      groupArgs
}

// Tune runs hyperat-tune with args (without the program name).
func Tune(c *cli.Command, args []string) error {
	a, err := parseTune(c, args)
	if err != nil {
		return err
	}
	ws, err := workspace.Read(a.ws)
	if err != nil {
		return err
	}
	m, err := loadWorkspaceModel(a.ws, ws)
	if err != nil {
		return err
	}
	if a.group.worker > 0 {
		// worker 0 reads the run's state and decides; this one follows
		if err := a.checkModel(ws); err != nil {
			return err
		}
		d, err := openTuneData(c, a, ws, m)
		if err != nil {
			return err
		}
		return a.tuneWorker(c, ws, d)
	}
	st, err := a.checkState(ws)
	if errors.Is(err, errRunComplete) {
		fmt.Fprintf(c.Stdout, "done      the run in %s is complete; its result is in %s\n", a.ws, workspace.TunedDir(a.ws))
		return nil
	}
	if err != nil {
		return err
	}
	if err := a.checkModel(ws); err != nil {
		return err
	}
	d, err := openTuneData(c, a, ws, m)
	if err != nil {
		return err
	}
	t, err := hyperat.NewTrainer(m, a.cfg, d.view, d.train)
	if err != nil {
		return err
	}
	cfg := a.cfg
	fmt.Fprintf(c.Stdout, "tune      %s with %s, eps %.4g, %d iterations of %d, rank %d, %d adapted layers, %d trained values\n",
		cfg.Method, strings.Join(cfg.Defenses, ","), cfg.Eps, cfg.Iters, cfg.Batch, cfg.Rank, len(t.Net.Targets), countValues(t))
	if cfg.AttackPrecision == kernels.BF16 {
		how := "AVX512_BF16"
		if !kernels.BF16.Native() {
			how = "fp32 here: this CPU lacks AVX512_BF16"
		}
		fmt.Fprintf(c.Stdout, "attacks   bf16 matrix products (%s)\n", how)
	}
	budget, previous, err := memoryBudget(c, a.maxMemory)
	if err != nil {
		return err
	}
	defer debug.SetMemoryLimit(previous)
	// the budget is checked before a previous run is removed
	if err := planMicro(c, t, budget, a.resume, a.micro, a.group.workers); err != nil {
		return err
	}
	if a.resume {
		if err := workspace.LoadCheckpoint(a.ws, st, t); err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "resume    from iteration %d of %d\n", t.It, a.cfg.Iters)
	} else if a.force || a.resumeOrStart {
		workspace.ClearRun(a.ws)
	}
	id, err := a.runIdentity(ws.Source.SHA256, d.view, d.train, d.val)
	if err != nil {
		return err
	}
	g, err := a.leadGroup(c, t, st, id)
	if err != nil {
		return err
	}
	if g != nil {
		defer g.Close()
		t.SetGroup(g)
	}
	fmt.Fprintf(c.Stdout, "compile   the attack and training programs for micro-batches of %d ...\n", t.MicroSize())
	start := time.Now()
	if err := t.Prepare(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "compile   done in %s\n", time.Since(start).Round(100*time.Millisecond))
	atChance := false
	if !a.resume {
		if atChance, err = checkStart(c, t, d.view, d.val); err != nil {
			return err
		}
	}
	collapsed, err := a.run(c, t, d.val, ws.Source.SHA256)
	if err != nil {
		return err
	}
	if g != nil {
		g.Close() // the others are done: finishing is worker 0's alone
	}
	return finish(c, t, d.view, d.val, a.valSteps, a.merge, a.ws, ws.Source.SHA256, collapsed, atChance)
}

// tuneData is the dataset a run tunes on, as the model sees it, with its
// training and validation splits.
type tuneData struct {
	model      *onnximport.Model
	view       *data.View
	train, val []int
}

// openTuneData opens the training split of --data and checks that it fits
// the model.
func openTuneData(c *cli.Command, a *tuneArgs, ws *workspace.Workspace, m *onnximport.Model) (*tuneData, error) {
	ds, err := data.Open(a.data, data.Train)
	if err != nil {
		return nil, err
	}
	C, H, W := ws.Input.Shape[1].N, ws.Input.Shape[2].N, ws.Input.Shape[3].N
	classes, err := hyperat.Classes(m.Graph)
	if err != nil {
		return nil, err
	}
	if err := data.CheckFits(ds, C, H, W, classes); err != nil {
		return nil, err
	}
	trainIdx, valIdx, err := data.ValidationSplit(ds.Len(), a.val, a.cfg.Seed)
	if err != nil {
		return nil, cli.Usagef("--val: %v", err)
	}
	fmt.Fprintf(c.Stdout, "data      %s: %d training, %d validation examples%s\n", a.data, len(trainIdx), len(valIdx), conversion(ds, C, H, W))
	return &tuneData{model: m, view: ds.View(C, H, W), train: trainIdx, val: valIdx}, nil
}

// parseTune reads and checks the command line.
func parseTune(c *cli.Command, args []string) (*tuneArgs, error) {
	def := hyperat.DefaultConfig()
	f := c.Flags
	dataPath := f.String("data", "", "")
	wsDir := f.String("workspace", workspace.DefaultDir, "")
	method := f.String("method", def.Method, "")
	defs := f.String("defenses", "", "")
	epsS := f.String("eps", "8/255", "")
	steps := f.Int("steps", def.Steps, "")
	attackPrec := f.String("attack-precision", def.AttackPrecision.String(), "")
	iters := f.Int("iters", def.Iters, "")
	batch := f.Int("batch", def.Batch, "")
	rank := f.Int("rank", def.Rank, "")
	alpha := f.Float64("lora-alpha", def.Alpha, "")
	lr := f.Float64("lr", def.LR, "")
	warm := f.Float64("warmup", def.Warmup, "")
	epsWarm := f.Float64("eps-warmup", def.EpsWarmup, "")
	clip := f.Float64("clip", def.Clip, "")
	beta := f.Float64("beta", def.Beta, "")
	targets := f.String("targets", strings.Join(def.Targets, ","), "")
	noHead := f.Bool("no-head", false, "")
	a := &tuneArgs{}
	f.StringVar(&a.merge, "merge", "uniform", "")
	f.Float64Var(&a.val, "val", 0.1, "")
	f.IntVar(&a.valSteps, "val-steps", 10, "")
	f.IntVar(&a.evalEvery, "eval-every", 50, "")
	f.IntVar(&a.every, "checkpoint-every", 50, "")
	seed := f.Uint64("seed", 0, "")
	f.BoolVar(&a.resume, "resume", false, "")
	f.BoolVar(&a.force, "force", false, "")
	f.StringVar(&a.maxMemory, "max-memory", "", "")
	f.IntVar(&a.micro, "micro-batch", 0, "")
	f.BoolVar(&a.resumeOrStart, "resume-or-start", false, "")
	worker := defineGroupFlags(c, &a.group)
	pos, err := c.Parse(args)
	if err != nil {
		return nil, err
	}
	a.data, a.ws = *dataPath, *wsDir
	switch {
	case len(pos) > 0:
		return nil, cli.Usagef("unexpected argument %q", pos[0])
	case a.data == "":
		return nil, cli.Usagef("--data is required")
	case a.merge != "uniform" && a.merge != "adaptive":
		return nil, cli.Usagef("--merge %q: want uniform or adaptive", a.merge)
	}
	eps, err := cli.ParseEps(*epsS)
	if err != nil {
		return nil, cli.Usagef("%v", err)
	}
	if a.maxMemory != "" {
		if _, err := sysmem.Parse(a.maxMemory); err != nil {
			return nil, cli.Usagef("--max-memory: %v", err)
		}
	}
	prec, err := kernels.ParsePrecision(*attackPrec)
	if err != nil {
		return nil, cli.Usagef("--attack-precision: %v", err)
	}
	switch {
	case a.valSteps < 1:
		return nil, cli.Usagef("--val-steps must be at least 1, got %d", a.valSteps)
	case a.evalEvery < 0:
		return nil, cli.Usagef("--eval-every must be 0 (only at the end) or more, got %d", a.evalEvery)
	case a.every < 0:
		return nil, cli.Usagef("--checkpoint-every must be 0 (only at the end) or more, got %d", a.every)
	case a.micro < 0:
		return nil, cli.Usagef("--micro-batch must be at least 1 (or 0: planned from --max-memory), got %d", a.micro)
	case a.resume && a.force:
		return nil, cli.Usagef("--resume continues a run and --force starts over; give one")
	case a.resumeOrStart && (a.resume || a.force):
		return nil, cli.Usagef("--resume-or-start resumes or starts as the workspace says; give it without --resume and --force")
	}
	if err := a.group.check(*worker); err != nil {
		return nil, err
	}
	cfg := def
	cfg.Method, cfg.Eps, cfg.Steps, cfg.Iters, cfg.Batch, cfg.Rank = *method, eps, *steps, *iters, *batch, *rank
	cfg.Alpha, cfg.LR, cfg.Warmup, cfg.EpsWarmup, cfg.Clip, cfg.Beta = *alpha, *lr, *warm, *epsWarm, *clip, *beta
	cfg.Targets, cfg.TrainHead, cfg.Seed = splitList(*targets), !*noHead, *seed
	cfg.AttackPrecision = prec
	switch {
	case *defs != "":
		cfg.Defenses = splitList(*defs)
	case cfg.Method != "hyperat":
		cfg.Defenses = []string{"pgdat"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, cli.Usagef("%v", err)
	}
	if a.micro > cfg.Batch {
		return nil, cli.Usagef("--micro-batch %d is larger than --batch %d", a.micro, cfg.Batch)
	}
	a.cfg, a.line = cfg, cfg
	return a, nil
}

// errRunComplete is checkState's answer to --resume-or-start when the
// workspace holds this run, finished.
var errRunComplete = errors.New("the run is complete")

// checkState checks the workspace's run against --resume and --force, and
// returns the checkpoint to resume (whose configuration then replaces the
// command line's).
func (a *tuneArgs) checkState(ws *workspace.Workspace) (*workspace.State, error) {
	st, stErr := workspace.ReadState(a.ws)
	if a.resumeOrStart {
		if stErr != nil && os.IsNotExist(stErr) {
			return nil, nil // no run: start one
		}
		if stErr == nil && st.ModelSHA256 == ws.Source.SHA256 {
			if diff := settingsDiffer(st.Config, a.line, a.micro); diff != "" {
				return nil, fmt.Errorf("%s holds a run of other settings (%s differ): give that run's settings, another --workspace, or start over with --force", a.ws, diff)
			}
		}
		a.resume = true
	}
	switch {
	case a.resume && stErr != nil:
		if os.IsNotExist(stErr) {
			return nil, fmt.Errorf("%s has no run to resume", a.ws)
		}
		return nil, stErr
	case a.resume:
		if st.ModelSHA256 != ws.Source.SHA256 {
			return nil, fmt.Errorf("the checkpoint in %s was made from another model (the workspace was imported again since); start over with --force", a.ws)
		}
		if _, err := os.Stat(filepath.Join(workspace.TunedDir(a.ws), workspace.ResultFile)); err == nil && st.Iteration >= st.Config.Iters {
			if a.resumeOrStart {
				return nil, errRunComplete
			}
			return nil, fmt.Errorf("the run in %s is already complete (%d iterations); its result is in %s", a.ws, st.Iteration, workspace.TunedDir(a.ws))
		}
		if diff := settingsDiffer(st.Config, a.line, a.micro); a.group.workers > 1 && diff != "" {
			return nil, fmt.Errorf("the run in %s has other settings than the command line (%s differ): on several workers, give every worker the run's settings", a.ws, diff)
		}
		if a.micro > 0 && a.micro != st.Config.Micro {
			return nil, fmt.Errorf("the run in %s has micro-batches of %d: --micro-batch %d would change its result; drop it to keep the run's", a.ws, st.Config.Micro, a.micro)
		}
		a.cfg = st.Config
	case stErr == nil && !a.force && st.ModelSHA256 != ws.Source.SHA256:
		return nil, fmt.Errorf("%s holds a run of another model (the workspace was imported again since); start over with --force", a.ws)
	case stErr == nil && !a.force:
		return nil, fmt.Errorf("%s already holds a run (iteration %d of %d); continue it with --resume or start over with --force", a.ws, st.Iteration, st.Config.Iters)
	case stErr != nil && !os.IsNotExist(stErr) && !a.force:
		return nil, stErr
	}
	return st, nil
}

// checkModel checks that the workspace's model takes images in batches of
// the configured size and has the layer kinds to adapt.
func (a *tuneArgs) checkModel(ws *workspace.Workspace) error {
	if len(ws.Input.Shape) != 4 {
		return fmt.Errorf("%s: the model's input %q is %v, not images [N, C, H, W]; import the model again", filepath.Join(a.ws, workspace.ManifestFile), ws.Input.Name, ws.Input.GraphShape())
	}
	// a model exported without a dynamic batch axis runs one batch size only
	if b := ws.Input.Shape[0].N; b > 1 || b == 1 && a.cfg.Batch != 1 {
		hint := ""
		if b == 1 {
			hint = ", or tune with --batch 1"
		}
		return fmt.Errorf("the model's input %q has a fixed batch of %d (it was exported without a dynamic batch axis); export it again with one (docs/USAGE.md)%s",
			ws.Input.Name, b, hint)
	}
	if a.cfg.Method == "full" {
		return nil
	}
	if a.cfg.TrainHead && !slices.ContainsFunc(ws.Layers, func(l workspace.Layer) bool { return l.Kind == layers.KindHead }) {
		return fmt.Errorf("hyperat-import recognized no classifier head in the model (a linear layer after the last transformer block whose output reaches the logits); tune with --no-head to adapt the blocks alone")
	}
	return checkTargets(a.cfg.Targets, ws)
}

// run tunes to the configured number of iterations, showing progress and
// plots; Ctrl-C checkpoints and stops. It reports whether a validation
// found the run collapsed.
func (a *tuneArgs) run(c *cli.Command, t *hyperat.Trainer, val []int, sha string) (collapsed bool, err error) {
	store, err := workspace.OpenRun(a.ws, sha, t.It)
	if err != nil {
		return false, err
	}
	defer store.Close()
	saved := &lastCheckpoint{Run: store, it: t.It}
	stop, release := interrupted()
	defer release()
	prog := newProgress(c.Stdout, a.cfg.Iters, t.It)
	fmt.Fprintf(c.Stdout, "iter %d/%d  running: a %d-step attack and a training pass per micro-batch ...\n", t.It+1, a.cfg.Iters, t.Cfg.Steps)
	replot := plotter(c.Stderr, a.ws, a.cfg, a.valSteps, t.Net.Classes)
	err = t.Run(hyperat.RunOptions{Store: saved, CheckpointEvery: a.every,
		EvalEvery: a.evalEvery, Val: val, ValSteps: a.valSteps, Stop: stop,
		OnStep: prog.step, OnMicro: prog.micro,
		OnVal: func(r hyperat.Record) {
			prog.val(r)
			if r.Collapsed {
				collapsed = true
			}
			replot()
		}})
	prog.done()
	if err == nil || errors.Is(err, hyperat.ErrInterrupted) {
		// a run that failed says why in one line; its plots stay as they
		// were at its last validation
		replot()
	}
	if errors.Is(err, hyperat.ErrInterrupted) {
		how := "--resume"
		if a.group.workers > 1 {
			how = "every worker with --resume-or-start"
		}
		return false, fmt.Errorf("interrupted at iteration %d of %d; checkpoint written, continue with %s", t.It, a.cfg.Iters, how)
	}
	if err != nil {
		return false, a.groupErr(err, saved.it)
	}
	return collapsed, nil
}

// lastCheckpoint is the run's store, knowing the iteration of its last
// checkpoint (that of the resumed one before any).
type lastCheckpoint struct {
	*workspace.Run
	it int
}

func (l *lastCheckpoint) Checkpoint(s hyperat.Snapshot) error {
	if err := l.Run.Checkpoint(s); err != nil {
		return err
	}
	l.it = s.Iteration
	return nil
}

// interrupted is a channel closed at the first Ctrl-C or SIGTERM (a
// Kubernetes pod being stopped), and the function that stops listening.
func interrupted() (<-chan struct{}, func()) {
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sig; ok {
			close(stop)
		}
	}()
	return stop, func() { signal.Stop(sig); close(sig) }
}

// checkTargets checks that every kind of --targets is one of the usual kinds
// (the default list, whose alternatives no model has all of) or a kind of
// layer in the model's blocks as hyperat-import found them, so that a
// misspelt kind is not silently left out.
func checkTargets(targets []string, ws *workspace.Workspace) error {
	var kinds []string
	for _, l := range ws.Layers {
		if l.Block >= 0 && !slices.Contains(kinds, l.Kind) {
			kinds = append(kinds, l.Kind)
		}
	}
	known := hyperat.DefaultConfig().Targets
	for _, k := range targets {
		if !slices.Contains(known, k) && !slices.Contains(kinds, k) {
			return fmt.Errorf("--targets: no layer kind %q in the model's blocks (they have %s)", k, strings.Join(kinds, ", "))
		}
	}
	return nil
}

// loadWorkspaceModel imports the workspace's copy of the model, checking
// that it is the one hyperat-import recorded in workspace.json.
func loadWorkspaceModel(dir string, ws *workspace.Workspace) (*onnximport.Model, error) {
	return workspace.LoadModel(dir, ws)
}

// finish evaluates each defense's LoRA and the merged model on the
// validation split, picks the merge weights, and writes the result.
func finish(c *cli.Command, t *hyperat.Trainer, view *data.View, val []int, steps int, merge, wsDir, sha string, collapsedDuring, atChance bool) error {
	cfg := t.Cfg
	eval := func(cl attack.Model) (hyperat.Accuracy, error) {
		return hyperat.Evaluate(cl, view, val, t.MicroSize(), cfg.Eps, steps, cfg.Seed+1)
	}
	var rows []hyperat.ResultRow
	if cfg.Method == "hyperat" {
		for m, d := range cfg.Defenses {
			cl, err := t.ForDefense(m)
			if err != nil {
				return err
			}
			a, err := eval(cl)
			if err != nil {
				return err
			}
			rows = append(rows, hyperat.ResultRow{Name: "LoRA of " + d + " alone", Clean: a.Clean, Robust: a.Robust})
		}
	}
	lambda := hyperat.Uniform(len(cfg.Defenses))
	if merge == "adaptive" && len(cfg.Defenses) > 1 {
		best := -1.0
		for _, l := range hyperat.Simplex(len(cfg.Defenses), 4) {
			cl, err := t.MergedModel(l)
			if err != nil {
				return err
			}
			a, err := eval(cl)
			if err != nil {
				return err
			}
			if a.Robust+1e-3*a.Clean > best {
				best, lambda = a.Robust+1e-3*a.Clean, l
			}
		}
	}
	cl, err := t.MergedModel(lambda)
	if err != nil {
		return err
	}
	a, err := eval(cl)
	if err != nil {
		return err
	}
	name := "merged (" + merge + fmtLambda(lambda) + ")"
	if cfg.Method != "hyperat" {
		name = cfg.Method + " " + cfg.Defenses[0]
	}
	rows = append(rows, hyperat.ResultRow{Name: name, Clean: a.Clean, Robust: a.Robust})
	collapsed := hyperat.Collapsed(a.Clean, t.Net.Classes)
	fmt.Fprintf(c.Stdout, "\nvalidation (%d examples, PGD-%d at eps %.4g)\n", len(val), steps, cfg.Eps)
	fmt.Fprintf(c.Stdout, "  %-40s %7s %7s\n", "model", "clean", "robust")
	for _, r := range rows {
		fmt.Fprintf(c.Stdout, "  %-40s %6.1f%% %6.1f%%\n", r.Name, 100*r.Clean, 100*r.Robust)
	}
	tuned, err := t.Tuned(hyperat.Result{ModelSHA256: sha, Lambda: lambda, Table: rows, Collapsed: collapsed})
	if err != nil {
		return err
	}
	if err := workspace.WriteResult(wsDir, tuned); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "\nresult    %s\n", workspace.TunedDir(wsDir))
	if collapsed && atChance {
		return fmt.Errorf("validation clean accuracy %.1f%% is near chance (%.1f%%), where the model was before tuning: it had not learned these classes; fine-tune it on them first (hyperat-export refuses this result without --force)", 100*a.Clean, 100/float64(t.Net.Classes))
	}
	if collapsed {
		return fmt.Errorf("the tuned model collapsed: validation clean accuracy %.1f%% is near chance (%.1f%%); lower --lr, keep --clip, or lengthen --eps-warmup (hyperat-export refuses this result without --force)", 100*a.Clean, 100/float64(t.Net.Classes))
	}
	if collapsedDuring {
		fmt.Fprintln(c.Stdout, "note: validation accuracy sat near chance during the run, then recovered")
	}
	return nil
}

func fmtLambda(l []float64) string {
	if len(l) < 2 {
		return ""
	}
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = fmt.Sprintf("%.2f", v)
	}
	return ", lambda " + strings.Join(parts, "/")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.ToLower(p))
		}
	}
	return out
}

func countValues(t *hyperat.Trainer) int {
	n := 0
	for _, p := range t.Params {
		n += len(p.F)
	}
	return n
}

func conversion(ds *data.Dataset, c, h, w int) string {
	if s := ds.Conversion(c, h, w); s != "" {
		return " (" + s + ")"
	}
	return ""
}

// plotter returns a function that redraws the plots of the run's metrics
// (next to them, in the workspace). Drawing never stops a run: a failure is
// reported in one line, once until drawing works again.
func plotter(w io.Writer, wsDir string, cfg hyperat.Config, valSteps, classes int) func() {
	run := plots.Run{Iters: cfg.Iters, WarmupEnd: cfg.EpsWarmup * float64(cfg.Iters), Classes: classes,
		Robust: fmt.Sprintf("robust (PGD-%d)", valSteps)}
	failing := false // said once until drawing works again
	return func() {
		recs, err := workspace.ReadMetrics(wsDir)
		if os.IsNotExist(err) {
			return // the run failed before its first record, and says why
		}
		if err == nil {
			err = plots.Write(recs, run, filepath.Join(wsDir, workspace.LossPlotFile), filepath.Join(wsDir, workspace.AccuracyPlotFile))
		}
		if err != nil && !failing {
			fmt.Fprintf(w, "warning: plots not updated: %s\n", cli.OneLine(err.Error()))
		}
		failing = err != nil
	}
}

// progress shows a bar on a terminal and plain lines otherwise.
type progress struct {
	w        io.Writer
	tty      bool
	total    int
	start    time.Time
	first    int
	lastLine time.Time
}

func newProgress(w io.Writer, total, first int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, total: total, start: time.Now(), first: first}
}

// micro shows the first iteration's micro-batches as they finish: before
// its end, nothing else says the run is under way.
func (p *progress) micro(it, done, total int) {
	if it != p.first || total < 2 {
		return
	}
	el := time.Since(p.start)
	line := fmt.Sprintf("iter %d/%d  micro-batch %d/%d done, %s each", it+1, p.total, done, total, (el / time.Duration(done)).Round(100*time.Millisecond))
	if p.tty {
		fmt.Fprintf(p.w, "\r%s ", line)
		if done == total {
			fmt.Fprintln(p.w)
		}
		return
	}
	if done == 1 || done == total || time.Since(p.lastLine) > 10*time.Second {
		fmt.Fprintln(p.w, line)
		p.lastLine = time.Now()
	}
}

// estimate says, after the first iteration, what an iteration and the rest
// of the run take (validations besides).
func (p *progress) estimate(s hyperat.Step) {
	per := time.Duration(s.Seconds * float64(time.Second))
	rest := time.Duration(p.total-s.It-1) * per
	if rest == 0 {
		return
	}
	fmt.Fprintf(p.w, "time      about %s per iteration: about %s for the %d iterations left, validations besides\n",
		per.Round(100*time.Millisecond), rest.Round(time.Second), p.total-s.It-1)
}

// pace is a run's speed as a reader wants it: iterations per second, or
// seconds per iteration for a run slower than one a second (a large model's
// 0.003 it/s would print as 0.00).
func pace(rate float64) string {
	if rate >= 1 {
		return fmt.Sprintf("%.2f it/s", rate)
	}
	return fmt.Sprintf("%.1f s/it", 1/math.Max(rate, 1e-9))
}

func (p *progress) step(s hyperat.Step) {
	if s.It == p.first {
		if p.tty {
			fmt.Fprint(p.w, "\r")
		}
		p.estimate(s)
	}
	done := s.It + 1 - p.first
	el := time.Since(p.start).Seconds()
	rate := float64(done) / math.Max(el, 1e-9)
	left := time.Duration(float64(p.total-s.It-1)/math.Max(rate, 1e-9)) * time.Second
	line := fmt.Sprintf("iter %d/%d  %-6s loss %.4f  eps %.4f  %s  %s left", s.It+1, p.total, s.Defense, s.Loss, s.Eps, pace(rate), left.Round(time.Second))
	if p.tty {
		width := 24
		fill := width * (s.It + 1) / p.total
		fmt.Fprintf(p.w, "\r[%s%s] %s ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), line)
		return
	}
	if time.Since(p.lastLine) > 10*time.Second || s.It+1 == p.total || s.It == p.first {
		fmt.Fprintln(p.w, line)
		p.lastLine = time.Now()
	}
}

func (p *progress) val(r hyperat.Record) {
	if p.tty {
		fmt.Fprintln(p.w)
	}
	msg := fmt.Sprintf("val  iter %d: clean %.1f%%  robust %.1f%%", r.It, 100*r.ValClean, 100*r.ValRobust)
	if r.Collapsed {
		msg += "  COLLAPSED: clean accuracy near chance after the eps warm-up"
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
