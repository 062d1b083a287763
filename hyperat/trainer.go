package hyperat

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/dist"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/kernels"
)

// Config is one tuning run. Defaults (DefaultConfig) follow the project's
// method description; each field is a flag of hyperat-tune.
type Config struct {
	Method   string   // hyperat, lora or full
	Defenses []string // pgdat, trades, mart
	Eps      float64
	Steps    int // inner attack steps
	Iters    int
	Batch    int
	// Micro is the images per micro-batch (0: the whole batch): an
	// iteration's attacks and training pass run micro-batch by micro-batch
	// and the update accumulates their gradients (see MicroGrad). It changes
	// the result by float32 rounding only; a resumed run keeps it, to repeat
	// the uninterrupted run's bits.
	Micro     int
	Rank      int
	Alpha     float64
	LR        float64
	Warmup    float64 // learning-rate warm-up fraction (one-cycle)
	EpsWarmup float64
	Clip      float64
	Beta      float64 // TRADES and MART regularizer weight
	WD        float64
	Targets   []string // adapted layer kinds
	TrainHead bool
	EmbedDim  int
	Hidden    int
	Seed      uint64
	// AttackPrecision is that of the matrix products of the training
	// attacks: kernels.FP32, or kernels.BF16 (operands rounded to bfloat16,
	// fp32 on CPUs without AVX512_BF16); the training pass, the update,
	// validation and evaluation stay float32. DefaultConfig's is BF16: its
	// attacks are as strong as float32's on the fixture, tuning with them
	// reaches the same robustness within the seeds' spread (docs/RESULTS.md),
	// and the iteration is about 1.4x faster (docs/BENCHMARKS.md).
	AttackPrecision kernels.Precision
}

// DefaultConfig is the run METHOD.md describes.
func DefaultConfig() Config {
	return Config{Method: "hyperat", Defenses: []string{"pgdat", "trades", "mart"}, Eps: 8.0 / 255, Steps: 10,
		Iters: 600, Batch: 64, Rank: 8, Alpha: 16, LR: 1e-3, Warmup: 0.1, EpsWarmup: 0.3, Clip: 1,
		Beta: 6, Targets: []string{"qkv", "q", "k", "v", "proj", "fc1", "fc2"}, TrainHead: true,
		EmbedDim: 32, Hidden: 128, AttackPrecision: kernels.BF16}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch c.Method {
	case "hyperat", "lora", "full":
	default:
		return fmt.Errorf("--method %q: want hyperat, lora or full", c.Method)
	}
	if len(c.Defenses) == 0 {
		return errors.New("--defenses: at least one defense")
	}
	for _, d := range c.Defenses {
		if _, err := NewDefense(d, c.Beta); err != nil {
			return fmt.Errorf("--defenses: %v", err)
		}
	}
	if c.Method != "hyperat" && len(c.Defenses) != 1 {
		return fmt.Errorf("--method %s tunes with one defense; got %s", c.Method, strings.Join(c.Defenses, ","))
	}
	switch {
	case !(c.Eps > 0 && c.Eps <= 1):
		return fmt.Errorf("--eps %g: must be in (0, 1]", c.Eps)
	case c.Steps < 1:
		return errors.New("--steps must be at least 1")
	case c.Iters < 1:
		return errors.New("--iters must be at least 1")
	case c.Batch < 1:
		return errors.New("--batch must be at least 1")
	case c.Micro < 0:
		return errors.New("the micro-batch size must be positive (0: the whole batch)")
	case c.Method != "full" && c.Rank < 1:
		return errors.New("--rank must be at least 1")
	case !(c.LR > 0):
		return errors.New("--lr must be positive")
	case c.EpsWarmup < 0 || c.EpsWarmup > 1 || c.Warmup < 0 || c.Warmup > 1:
		return errors.New("warm-up fractions must be in [0, 1]")
	}
	return nil
}

// Source yields batches of examples by index.
type Source interface {
	Batch(indices []int) (x *graph.Tensor, y []int, err error)
}

// Trainer runs a tuning: it owns every trained tensor and the optimizer.
type Trainer struct {
	Cfg   Config
	Net   *Net
	Hyper *Hypernet
	defs  []Defense
	// Params of the hypernetwork (hyperat), or the LoRA factors (lora),
	// followed by the trained weights of the model (head, or all for full).
	Params []*graph.Tensor
	Names  []string
	grads  []*graph.Tensor
	Opt    *AdamW
	It     int
	data   Source
	train  []int
	// work buffers: the factors fed to the net, the iteration's gradient
	// (sum: of the factors, then of the trained weights) and one
	// micro-batch's contribution to it (part)
	lora      Params
	sum, part *Params
	prepared  int // the micro-batch size the programs were compiled for (see Net.Prepare)
	// onMicro, when set, hears of every micro-batch done (Run sets it).
	onMicro func(it, done, total int)
	group   Group // nil: this process alone
	// the model as imported (nothing changes it), for merging
	orig      *graph.Graph
	origModel *onnximport.Model
}

// Step describes one iteration.
type Step struct {
	It       int
	Defense  string
	Loss     float64
	Eps      float64
	LR       float64
	GradNorm float64
	Seconds  float64
}

// NewTrainer prepares a run on an imported model.
func NewTrainer(m *onnximport.Model, cfg Config, data Source, train []int) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(train) < cfg.Batch {
		return nil, fmt.Errorf("the training split has %d examples, fewer than one batch of %d", len(train), cfg.Batch)
	}
	kinds := map[string]bool{}
	for _, k := range cfg.Targets {
		kinds[k] = true
	}
	net, err := NewNet(m.Graph, NetOptions{Rank: cfg.Rank, Alpha: float32(cfg.Alpha), Kinds: kinds,
		TrainHead: cfg.TrainHead || cfg.Method == "full", TrainAll: cfg.Method == "full", NoLoRA: cfg.Method == "full"})
	if err != nil {
		return nil, err
	}
	t := &Trainer{Cfg: cfg, Net: net, data: data, train: train, orig: m.Graph, origModel: m}
	for _, d := range cfg.Defenses {
		def, _ := NewDefense(d, cfg.Beta)
		t.defs = append(t.defs, def)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x1417))
	for _, tg := range net.Targets {
		t.lora.A = append(t.lora.A, graph.NewTensor(graph.Float32, []int{cfg.Rank, tg.In}))
		t.lora.B = append(t.lora.B, graph.NewTensor(graph.Float32, []int{tg.Out, cfg.Rank}))
	}
	switch cfg.Method {
	case "hyperat":
		h, init, err := NewHypernet(net.Targets, cfg.Rank, len(t.defs), HyperOptions{EmbedDim: cfg.EmbedDim, Hidden: cfg.Hidden}, rng)
		if err != nil {
			return nil, err
		}
		t.Hyper = h
		t.Params = append(t.Params, init...)
		for _, n := range h.Names {
			t.Names = append(t.Names, "hypernet."+n)
		}
	case "lora":
		// PEFT's init: A Kaiming-uniform (bound 1/sqrt(in)), B zero
		for i, tg := range net.Targets {
			a := t.lora.A[i].Clone()
			bound := 1 / math.Sqrt(float64(tg.In))
			for j := range a.F {
				a.F[j] = float32((2*rng.Float64() - 1) * bound)
			}
			t.Params = append(t.Params, a, t.lora.B[i].Clone())
			t.Names = append(t.Names, "lora_A."+tg.Name, "lora_B."+tg.Name)
		}
	}
	for i, w := range net.Train {
		t.Params = append(t.Params, net.Init[i].Clone())
		t.Names = append(t.Names, "weight."+w.Name)
	}
	for _, p := range t.Params {
		t.grads = append(t.grads, graph.NewTensor(graph.Float32, p.Shape))
	}
	t.sum = zerosLike(&t.lora)
	t.sum.Train = t.grads[len(t.grads)-len(t.Net.Train):]
	t.part = zerosLike(&Params{A: t.lora.A, B: t.lora.B, Train: t.Net.Init})
	t.Opt = NewAdamW(t.Params, cfg.WD)
	return t, nil
}

// trainedWeights are the model weights among Params (after hypernet or LoRA ones).
func (t *Trainer) trainedWeights() []*graph.Tensor {
	return t.Params[len(t.Params)-len(t.Net.Train):]
}

// LoRAFor fills the factors of defense m (hyperat: generated; lora: the
// trained ones) and returns the parameter set to feed the net.
func (t *Trainer) LoRAFor(m int) (*Params, error) {
	switch t.Cfg.Method {
	case "hyperat":
		if err := t.Hyper.Generate(m, t.Params[:len(t.Hyper.Names)], t.lora.A, t.lora.B); err != nil {
			return nil, err
		}
	case "lora":
		for i := range t.lora.A {
			copy(t.lora.A[i].F, t.Params[2*i].F)
			copy(t.lora.B[i].F, t.Params[2*i+1].F)
		}
	}
	return &Params{A: t.lora.A, B: t.lora.B, Train: t.trainedWeights()}, nil
}

// iterRand is the random stream of iteration it: a pure function of the seed
// and the iteration, so a resumed run draws what an uninterrupted one would.
func (t *Trainer) iterRand(it int) *rand.Rand {
	return rand.New(rand.NewPCG(t.Cfg.Seed, 0x9e3779b97f4a7c15^uint64(it)))
}

// batchIndices is the it-th batch of a seeded per-epoch shuffle (the last
// partial batch of an epoch is dropped).
func (t *Trainer) batchIndices(it int) []int {
	per := len(t.train) / t.Cfg.Batch
	epoch, k := it/per, it%per
	perm := rand.New(rand.NewPCG(t.Cfg.Seed, uint64(epoch)+1)).Perm(len(t.train))
	idx := make([]int, t.Cfg.Batch)
	for i := range idx {
		idx[i] = t.train[perm[k*t.Cfg.Batch+i]]
	}
	return idx
}

// MicroSize is the images per micro-batch of the run.
func (t *Trainer) MicroSize() int {
	if t.Cfg.Micro <= 0 || t.Cfg.Micro > t.Cfg.Batch {
		return t.Cfg.Batch
	}
	return t.Cfg.Micro
}

// Prepare compiles the programs the run's iterations use (Step does it on
// first use): the attack and training programs at the micro-batch size, and
// at the size of a smaller last micro-batch.
func (t *Trainer) Prepare() error {
	mb := t.MicroSize()
	if t.prepared == mb {
		return nil
	}
	pairs, singles := false, false
	for _, d := range t.defs {
		pairs = pairs || d.NeedsClean()
		singles = singles || !d.NeedsClean()
	}
	if err := t.Net.Prepare(mb, pairs, singles, t.Cfg.AttackPrecision); err != nil {
		return err
	}
	if r := t.Cfg.Batch % mb; r != 0 {
		if err := t.Net.Prepare(r, pairs, singles, t.Cfg.AttackPrecision); err != nil {
			return err
		}
	}
	t.prepared = mb
	return nil
}

// Step runs iteration t.It and advances.
func (t *Trainer) Step() (Step, error) {
	start := time.Now()
	if err := t.Prepare(); err != nil {
		return Step{}, err
	}
	it := t.It
	rng := t.iterRand(it)
	m := 0
	if len(t.defs) > 1 {
		m = rng.IntN(len(t.defs))
	}
	def := t.defs[m]
	eps := epsAt(t.Cfg.Eps, it, t.Cfg.Iters, t.Cfg.EpsWarmup)
	lr := oneCycle(t.Cfg.LR, it, t.Cfg.Iters, t.Cfg.Warmup)
	x, y, err := t.data.Batch(t.batchIndices(it))
	if err != nil {
		return Step{}, err
	}
	ps, err := t.LoRAFor(m)
	if err != nil {
		return Step{}, err
	}
	for _, g := range t.grads {
		clear(g.F)
	}
	loss, err := t.gradient(it, MicroAttack{Def: def, Eps: eps, Steps: t.Cfg.Steps, Precision: t.Cfg.AttackPrecision, Seed: t.Cfg.Seed}, ps, x, y)
	if err != nil {
		return Step{}, err
	}
	acc := t.sum
	switch t.Cfg.Method {
	case "hyperat":
		// the hypernetwork program still holds the activations of this
		// iteration's Generate (nothing else runs it in between)
		if err := t.Hyper.Backward(acc.A, acc.B, t.grads[:len(t.Hyper.Names)]); err != nil {
			return Step{}, err
		}
	case "lora":
		for i := range acc.A {
			copy(t.grads[2*i].F, acc.A[i].F)
			copy(t.grads[2*i+1].F, acc.B[i].F)
		}
	}
	norm := clipGradNorm(t.grads, t.Cfg.Clip)
	// a non-finite loss or gradient stops the run before the update, so the
	// parameters (and any checkpoint written from them) stay the last good ones
	if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return Step{}, fmt.Errorf("iteration %d: the loss is %g and the gradient norm %g; lower --lr or keep --clip", it, loss, norm)
	}
	t.Opt.Update(t.Params, t.grads, lr)
	t.It++
	return Step{It: it, Defense: def.Name(), Loss: loss, Eps: eps, LR: lr, GradNorm: norm, Seconds: time.Since(start).Seconds()}, nil
}

// gradient sets t.sum to the gradient of the mean loss of batch x (labels
// y) of iteration it, running it micro-batch by micro-batch and adding the
// contributions in micro-batch order; it returns the mean loss. In a group
// (SetGroup), this process computes micro-batches rank, rank+size, ... and
// the group adds every process's contributions in the same order.
func (t *Trainer) gradient(it int, a MicroAttack, ps *Params, x *graph.Tensor, y []int) (float64, error) {
	n := x.Shape[0]
	streams := ImageStreams(it, n)
	ms := MicroBatches(n, t.MicroSize())
	rank, size := t.share()
	mine := (len(ms) - rank + size - 1) / size
	var parts []dist.Part
	loss, done := 0.0, 0
	for k := rank; k < len(ms); k += size {
		mb := ms[k]
		l, err := t.Net.MicroGrad(a, ps, rows(x, mb.Lo, mb.Hi), y[mb.Lo:mb.Hi], streams[mb.Lo:mb.Hi],
			float64(mb.Hi-mb.Lo)/float64(n), t.part)
		if err != nil {
			return 0, err
		}
		if size == 1 {
			// what dist.SumInOrder does, without holding every contribution
			Accumulate(t.sum, t.part, k == 0)
			loss = addStat(loss, l, k == 0)
		} else {
			parts = append(parts, dist.Part{Index: k, Data: t.part.Flat(), Stats: []float64{l}})
		}
		if done++; t.onMicro != nil {
			t.onMicro(it, done, mine)
		}
	}
	if size == 1 {
		return loss, nil
	}
	s, err := t.group.Step(gradientStep(it), parts, len(ms))
	if err != nil {
		return 0, fmt.Errorf("iteration %d: %w", it, err)
	}
	if err := t.sum.SetFlat(s.Data); err != nil {
		return 0, err
	}
	return s.Stats[0], nil
}

// addStat adds v to the sum s of a statistic, or starts it (first) as
// dist.SumInOrder does: from v, not 0 + v.
func addStat(s, v float64, first bool) float64 {
	if first {
		return v
	}
	return s + v
}

// Group is the processes of a data-parallel run (a *dist.Group): each
// computes its share of every iteration's micro-batches and Step returns the
// sum of all the processes' contributions, added in micro-batch order.
type Group interface {
	Rank() int
	Size() int
	Step(step int64, parts []dist.Part, total int) (dist.Sum, error)
}

// SetGroup makes the trainer one process of g: every process of the group
// must run the same configuration from the same state; each then takes the
// same steps and holds the same parameters, bit for bit, as one process
// alone. Validation is split among them too.
func (t *Trainer) SetGroup(g Group) { t.group = g }

// share is this process's rank and the group's size (0 and 1 alone).
func (t *Trainer) share() (rank, size int) {
	if t.group == nil {
		return 0, 1
	}
	return t.group.Rank(), t.group.Size()
}

// The group's steps are numbered in the order every process takes them:
// iteration it's gradient, then the validation that may follow it.
func gradientStep(it int) int64   { return 2 * int64(it) }
func validationStep(it int) int64 { return 2*int64(it) + 1 }

// rows is a copy of the rows [lo, hi) of x.
func rows(x *graph.Tensor, lo, hi int) *graph.Tensor {
	d := graph.Numel(x.Shape[1:])
	return graph.F32(append([]int{hi - lo}, x.Shape[1:]...), slices.Clone(x.F[lo*d:hi*d]))
}

// Programs are the compiled programs the trainer has built so far (attack
// and training passes of the model, the hypernetwork), for profiling.
func (t *Trainer) Programs() []*compile.Program {
	var ps []*compile.Program
	for _, m := range []map[int]*vjp{t.Net.attack, t.Net.attackBF16, t.Net.train} {
		keys := make([]int, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ps = append(ps, m[k].p)
		}
	}
	if t.Hyper != nil && t.Hyper.prog != nil {
		ps = append(ps, t.Hyper.prog)
	}
	return ps
}
