// hyperat-eval runs an ONNX classifier on a batch of images.
//
//	hyperat-eval MODEL.onnx --input X.npy [--logits Y.npy] [--labels L.npy --grad-input G.npy] [--batch N]

package app

import (
	"fmt"
	"math"
	"strings"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/internal/sysmem"
	"github.com/hyperat/hyperat/loss"
	"github.com/hyperat/hyperat/model"
	"github.com/hyperat/hyperat/npy"
)

const evalUsage = `usage: hyperat-eval MODEL.onnx --data PATH --eps E --attacks LIST [--suite autoattack]
                    [--limit N] [--batch B] [--seed S] [--json FILE] [--state FILE]
                    [--save-adv DIR] [--shard I/N [--shard-mode M]]
       hyperat-eval merge REPORT... [--json FILE]
       hyperat-eval MODEL.onnx --input X.npy [--logits Y.npy]
                    [--labels L.npy --grad-input G.npy] [--batch N]

With --data, measures the robustness of any ONNX image classifier whose input
is pixels in [0, 1], on the test split of the dataset folder (MNIST-family IDX,
CIFAR-10/100 binary, or one subfolder of images per class; images are
converted to the model's input size and channels):
  clean       accuracy on the images themselves
  fgsm        one signed-gradient step of eps
  pgd-K       K steps on the cross-entropy from a uniform random start, step 2.5 eps/K
  cw-K        the same on the margin loss max_{k!=y} z_k - z_y
  apgd-ce     APGD on the cross-entropy (AutoAttack's settings, 100 iterations)
  apgd-t      targeted APGD on the DLR loss, 9 target classes
  fab-t       targeted FAB, 9 target classes
  square      Square, 5000 queries
  autoattack  the standard suite: apgd-ce, apgd-t, fab-t, square, per-sample worst case
A sample counts as robust only if the model is right on it and on the attack's
example. Each sample draws its randomness from its own stream of --seed, named
by its index in the dataset, so results do not depend on --batch. Before the
attacks it runs AutoAttack's checks of the model and prints a warning line for
each that fails (a randomized model, outputs that look like probabilities, too
few classes for the targeted attacks). The images go through all the attacks
one batch at a time; after each batch the state is written (--state, by
default FILE.state next to --json FILE), so a run that is interrupted (Ctrl-C,
SIGTERM, killed) continues where it stopped when the same command is run
again, with the same result as a run never interrupted; a state made for
another model, other images, eps, attacks, seed or --batch is refused.

With --shard I/N it evaluates the I-th of N parts of the images (I from 0
to N-1, as a Kubernetes Indexed Job numbers its pods) and its --json report
holds that part's images; merge puts the reports of all N parts together
into the report one run over all the images gives, with the same numbers
bit for bit. A part is made of whole batches of the list (--batch images):
every N-th batch from the I-th (interleaved), or one run of consecutive
batches (contiguous). Every image is computed in the same batch as in a
single run, so its result does not depend on N nor on the part it falls in,
and a part run again gives the same report. merge refuses a part missing or
given twice, and parts of another evaluation (another model, image list,
eps, attacks, seed, --batch, N, version of the tool, or kernels: machines
with other instruction sets round differently).

Runs the model's forward pass on the images in X.npy (float32, the model's
input shape with any number of samples first, pixels as the model expects
them) and writes the model's first output (the logits) to Y.npy as float32.
With --labels and --grad-input it also writes d(mean cross-entropy)/d(input),
the mean taken over all the samples of X.npy, as float32 of X's shape.

flags:
  --data PATH         dataset folder (robustness mode)
  --eps E             L-inf radius in pixel units, 0.1 or 8/255 (required
                      with --data)
  --attacks LIST      comma-separated names from the list above (default clean,pgd-20)
  --suite autoattack  add the AutoAttack standard suite
  --limit N           the first N test images, in file order (default all)
  --seed S            random seed (default 0)
  --json FILE         also write a report (written atomically; with merge, the
                      merged report): the settings, the model's SHA-256, the
                      image list's SHA-256, the tool's version, the kernels,
                      clean and AutoAttack accuracy, {name: accuracy}, the
                      warnings, and per image its dataset index, label,
                      clean prediction and whether it stayed robust under
                      each attack
  --state FILE        where the state of the run goes (default FILE.state for
                      --json FILE; none without either); removed when done
  --save-adv DIR      also write each attack's examples to DIR/ATTACK.npy
                      (float32, the images' shape), with DIR/index.npy and
                      DIR/labels.npy (int64 dataset indices and labels)
  --shard I/N         evaluate the I-th of N parts of the images (0 <= I < N)
  --shard-mode M      interleaved (default: batches I, I+N, ...) or contiguous
  --input X.npy       the images
  --logits Y.npy      where the logits go (written atomically)
  --labels L.npy      int64 class labels, one per sample
  --grad-input G.npy  where the input gradient goes (written atomically)
  --batch N           samples per pass (default 32; a model exported with a
                      fixed batch runs at that batch, which --data takes
                      only when it is 1); with --data, fewer when
                      --max-memory holds fewer
  --max-memory SIZE   memory the evaluation may use, such as 12G (with --data;
                      default 80% of the memory available now, said at the start)
  -h, --help          print this help

examples:
  hyperat-eval robust.onnx --data fixtures/mnist --eps 0.1 --attacks clean,pgd-20,cw-20 --limit 500
  hyperat-eval robust.onnx --data cifar-10-batches-bin --eps 8/255 --suite autoattack --json aa.json
  hyperat-eval robust.onnx --data fixtures/mnist --eps 0.1 --suite autoattack --limit 200 --save-adv adv/
  hyperat-eval robust.onnx --data cifar-10-batches-bin --eps 8/255 --suite autoattack --shard 3/8 --json shard-3.json
  hyperat-eval merge shard-0.json shard-1.json ... shard-7.json --json aa.json
  hyperat-eval vit.onnx --input x.npy --logits y.npy
  hyperat-eval vit.onnx --input x.npy --labels l.npy --grad-input g.npy

exit status: 0 done, 1 an error (one line on stderr), 2 a mistake in the
command line.
`

// defaultBatch bounds the memory of one forward pass.
const defaultBatch = 32

// EvalCommand is the hyperat-eval command line.
func EvalCommand() *cli.Command { return cli.New("hyperat-eval", evalUsage) }

// Eval runs hyperat-eval with args (without the program name).
func Eval(c *cli.Command, args []string) error {
	inPath := c.Flags.String("input", "", "")
	outPath := c.Flags.String("logits", "", "")
	labelsPath := c.Flags.String("labels", "", "")
	gradPath := c.Flags.String("grad-input", "", "")
	batch := c.Flags.Int("batch", defaultBatch, "")
	dataPath := c.Flags.String("data", "", "")
	epsS := c.Flags.String("eps", "", "")
	attacks := c.Flags.String("attacks", "clean,pgd-20", "")
	suite := c.Flags.String("suite", "", "")
	limit := c.Flags.Int("limit", 0, "")
	seed := c.Flags.Uint64("seed", 0, "")
	jsonPath := c.Flags.String("json", "", "")
	statePath := c.Flags.String("state", "", "")
	saveAdv := c.Flags.String("save-adv", "", "")
	maxMemory := c.Flags.String("max-memory", "", "")
	shard := c.Flags.String("shard", "", "")
	shardMode := c.Flags.String("shard-mode", shardInterleaved, "")
	if len(args) > 0 && args[0] == "merge" {
		return evalMerge(c, args[1:], jsonPath)
	}
	pos, err := c.Parse(args)
	if err != nil {
		return err
	}
	if *dataPath != "" {
		var sh *shardSpec
		switch {
		case *shard != "":
			if sh, err = parseShard(*shard, *shardMode); err != nil {
				return cli.Usagef("%v", err)
			}
		case c.Flags.Changed("shard-mode"):
			return cli.Usagef("--shard-mode goes with --shard")
		}
		switch {
		case len(pos) != 1:
			return cli.Usagef("give one model")
		case *inPath != "" || *outPath != "" || *labelsPath != "" || *gradPath != "":
			return cli.Usagef("--data does not go with --input, --logits, --labels or --grad-input")
		case *jsonPath != "" && *jsonPath == *statePath:
			return cli.Usagef("--json and --state name the same file")
		case *epsS == "":
			return cli.Usagef("--eps is required with --data")
		case *batch <= 0:
			return cli.Usagef("--batch must be positive, got %d", *batch)
		}
		if *maxMemory != "" {
			if _, err := sysmem.Parse(*maxMemory); err != nil {
				return cli.Usagef("--max-memory: %v", err)
			}
		}
		return evalRobust(c, evalOptions{model: pos[0], data: *dataPath, eps: *epsS, attacks: *attacks, suite: *suite,
			limit: *limit, batch: *batch, seed: *seed, json: *jsonPath, state: *statePath, saveAdv: *saveAdv, maxMemory: *maxMemory, shard: sh})
	}
	switch {
	case *jsonPath != "" || *statePath != "" || *saveAdv != "" || *suite != "" || *maxMemory != "" || *shard != "" || c.Flags.Changed("shard-mode"):
		return cli.Usagef("--json, --state, --save-adv, --suite, --max-memory, --shard and --shard-mode go with --data")
	case len(pos) == 0:
		return cli.Usagef("no model given")
	case len(pos) > 1:
		return cli.Usagef("one model at a time, got %d: %s", len(pos), strings.Join(pos, " "))
	case *inPath == "":
		return cli.Usagef("--input X.npy is required")
	case *outPath == "" && *gradPath == "":
		return cli.Usagef("--logits Y.npy or --grad-input G.npy is required")
	case (*labelsPath == "") != (*gradPath == ""):
		return cli.Usagef("--labels and --grad-input go together")
	case *batch <= 0:
		return cli.Usagef("--batch must be positive, got %d", *batch)
	}
	return evalArrays(pos[0], *inPath, *outPath, *labelsPath, *gradPath, *batch)
}

// evalArrays is the --input mode: the logits of the images in inPath, and
// with labels d(mean cross-entropy)/d(input).
func evalArrays(modelPath, inPath, outPath, labelsPath, gradPath string, batch int) error {
	m, err := onnximport.Load(modelPath)
	if err != nil {
		return err
	}
	x, err := npy.ReadFile(inPath)
	if err != nil {
		return err
	}
	var labels *graph.Tensor
	if labelsPath != "" {
		if labels, err = npy.ReadFile(labelsPath); err != nil {
			return err
		}
		if labels.DType != graph.Int64 || len(labels.Shape) != 1 || len(x.Shape) == 0 || labels.Shape[0] != x.Shape[0] {
			return fmt.Errorf("%s: %s%s, want int64 labels of shape [%d] (one per sample of %s)", labelsPath, labels.DType, shapeString(labels.Shape), x.Shape[0], inPath)
		}
	}
	c, err := model.New(m)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Path, err)
	}
	if batch, err = chunkSize(m.Graph.Inputs[0], x, inPath, batch); err != nil {
		return err
	}
	if labels != nil {
		for i, l := range labels.I {
			if l < 0 || l >= int64(c.Classes()) {
				return fmt.Errorf("%s: label %d of sample %d is outside the model's %d classes", labelsPath, l, i, c.Classes())
			}
		}
	}
	if outPath != "" {
		logits, err := forward(c, x, batch)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Path, err)
		}
		if err := npy.WriteFile(outPath, logits); err != nil {
			return err
		}
	}
	if labels == nil {
		return nil
	}
	g, err := inputGrad(c, x, labels.I, batch)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Path, err)
	}
	return npy.WriteFile(gradPath, g)
}

// chunkSize checks the images x against the model's input in (dtype, shape,
// at least one sample, finite values) and returns the samples per pass: at
// most batch, or the batch the model was exported with, which must divide
// the sample count.
func chunkSize(in *graph.Value, x *graph.Tensor, xName string, batch int) (int, error) {
	if err := checkInput(in, x, xName); err != nil {
		return 0, err
	}
	for i, v := range x.F {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("%s: value %d (sample %d) is %v; the model's input must be finite", xName, i, i/(x.Numel()/x.Shape[0]), v)
		}
	}
	n := x.Shape[0]
	if d := in.Shape[0]; d.N >= 0 {
		// a model exported with a fixed batch runs at that batch
		batch = d.N
		if n%batch != 0 {
			return 0, fmt.Errorf("%s: %d samples, but the model's input %q %s has a fixed batch of %d: give a multiple of it, or export the model with a dynamic batch",
				xName, n, in.Name, in.Shape, batch)
		}
	}
	return min(batch, n), nil
}

// chunks calls f with each run of at most batch samples of x, from start.
func chunks(x *graph.Tensor, batch int, f func(start int, chunk *graph.Tensor) error) error {
	n := x.Shape[0]
	sample := x.Numel() / n
	for start := 0; start < n; start += batch {
		b := min(batch, n-start)
		if err := f(start, graph.F32(append([]int{b}, x.Shape[1:]...), x.F[start*sample:(start+b)*sample])); err != nil {
			return err
		}
	}
	return nil
}

// forward runs the classifier over x in chunks of batch samples and returns
// the logits of every sample, [N, classes].
func forward(c *model.Classifier, x *graph.Tensor, batch int) (*graph.Tensor, error) {
	k := c.Classes()
	out := graph.NewTensor(graph.Float32, []int{x.Shape[0], k})
	err := chunks(x, batch, func(start int, chunk *graph.Tensor) error {
		l, err := c.Logits(chunk)
		if err != nil {
			return err
		}
		copy(out.F[start*k:], l.F)
		return nil
	})
	return out, err
}

// inputGrad is d(mean cross-entropy over all n samples)/dx, in chunks: each
// chunk's vector-Jacobian product gets the cotangent (softmax - onehot) / n.
func inputGrad(c *model.Classifier, x *graph.Tensor, labels []int64, batch int) (*graph.Tensor, error) {
	n := x.Shape[0]
	sample := x.Numel() / n
	out := graph.NewTensor(graph.Float32, x.Shape)
	err := chunks(x, batch, func(start int, chunk *graph.Tensor) error {
		_, g, err := c.InputGrad(chunk, func(l *graph.Tensor) *graph.Tensor {
			_, s := loss.Batch(l, float64(n), func(i int, z, g []float64) float64 {
				return loss.CrossEntropy(z, int(labels[start+i]), g)
			})
			return s
		})
		if err != nil {
			return err
		}
		copy(out.F[start*sample:], g.F)
		return nil
	})
	return out, err
}

// checkInput checks x against the model's input (float32 [N, C, H, W], as
// model.Inspect found it): float32, same rank, same non-batch dims, at least
// one sample.
func checkInput(in *graph.Value, x *graph.Tensor, xName string) error {
	if x.DType != graph.Float32 {
		return fmt.Errorf("%s: dtype %s, the model's input %q wants float32", xName, x.DType, in.Name)
	}
	mismatch := func(why string) error {
		return fmt.Errorf("%s: shape %s does not match the model's input %q %s (%s)", xName, shapeString(x.Shape), in.Name, in.Shape, why)
	}
	if len(x.Shape) != len(in.Shape) {
		return mismatch(fmt.Sprintf("rank %d, want %d", len(x.Shape), len(in.Shape)))
	}
	for i := 1; i < len(in.Shape); i++ {
		if d := in.Shape[i]; d.N >= 0 && d.N != x.Shape[i] {
			return mismatch(fmt.Sprintf("dim %d is %d, want %d", i, x.Shape[i], d.N))
		}
	}
	if len(x.Shape) == 0 || x.Shape[0] == 0 {
		return fmt.Errorf("%s: shape %s holds no samples", xName, shapeString(x.Shape))
	}
	return nil
}

// shapeString prints a shape like the IR does: [3,1,28,28].
func shapeString(s []int) string { return graph.StaticShape(s...).String() }
