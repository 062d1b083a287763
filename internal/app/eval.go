// hyperat-eval runs an ONNX classifier on a batch of images.
//
//	hyperat-eval MODEL.onnx --input X.npy [--logits Y.npy] [--labels L.npy --grad-input G.npy] [--batch N]

package app

import (
	"fmt"
	"math"
	"strings"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/npy"
)

const evalUsage = `usage: hyperat-eval MODEL.onnx --data PATH --eps E --attacks LIST [--suite autoattack]
                    [--limit N] [--batch B] [--seed S] [--json FILE]
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
example. Each sample draws its randomness from its own stream of --seed, so
results do not depend on --batch.

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
  --json FILE         also write {"model", "data", "eps", "n", "seed",
                      "results": {name: accuracy}} (written atomically)
  --input X.npy       the images
  --logits Y.npy      where the logits go (written atomically)
  --labels L.npy      int64 class labels, one per sample
  --grad-input G.npy  where the input gradient goes (written atomically)
  --batch N           samples per pass (default 32; a model exported with a
                      fixed batch runs at that batch, which --data takes
                      only when it is 1)
  -h, --help          print this help

examples:
  hyperat-eval robust.onnx --data fixtures/mnist --eps 0.1 --attacks clean,pgd-20,cw-20 --limit 500
  hyperat-eval robust.onnx --data cifar-10-batches-bin --eps 8/255 --suite autoattack --json aa.json
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
	pos, err := c.Parse(args)
	if err != nil {
		return err
	}
	if *dataPath != "" {
		switch {
		case len(pos) != 1:
			return cli.Usagef("give one model")
		case *inPath != "" || *outPath != "" || *labelsPath != "" || *gradPath != "":
			return cli.Usagef("--data does not go with --input, --logits, --labels or --grad-input")
		case *epsS == "":
			return cli.Usagef("--eps is required with --data")
		case *batch <= 0:
			return cli.Usagef("--batch must be positive, got %d", *batch)
		}
		return evalRobust(c, pos[0], *dataPath, *epsS, *attacks, *suite, *limit, *batch, *seed, *jsonPath)
	}
	switch {
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
	m, err := onnximport.Load(pos[0])
	if err != nil {
		return err
	}
	x, err := npy.ReadFile(*inPath)
	if err != nil {
		return err
	}
	var labels *graph.Tensor
	if *labelsPath != "" {
		if labels, err = npy.ReadFile(*labelsPath); err != nil {
			return err
		}
		if labels.DType != graph.Int64 || len(labels.Shape) != 1 || len(x.Shape) == 0 || labels.Shape[0] != x.Shape[0] {
			return fmt.Errorf("%s: %s%s, want int64 labels of shape [%d] (one per sample of %s)", *labelsPath, labels.DType, shapeString(labels.Shape), x.Shape[0], *inPath)
		}
	}
	logits, err := forward(m, x, *inPath, *batch)
	if err != nil {
		return err
	}
	if labels != nil {
		k := logits.Shape[len(logits.Shape)-1]
		if len(logits.Shape) != 2 {
			return fmt.Errorf("%s: the first output is %s, not logits [N, classes]", m.Path, shapeString(logits.Shape))
		}
		for i, l := range labels.I {
			if l < 0 || l >= int64(k) {
				return fmt.Errorf("%s: label %d of sample %d is outside the model's %d classes", *labelsPath, l, i, k)
			}
		}
	}
	if *outPath != "" {
		if err := npy.WriteFile(*outPath, logits); err != nil {
			return err
		}
	}
	if labels == nil {
		return nil
	}
	g, err := inputGrad(m, x, labels.I, *batch)
	if err != nil {
		return err
	}
	return npy.WriteFile(*gradPath, g)
}

// inputGrad is d(mean cross-entropy over all n samples)/dx, in chunks: each
// chunk's vector-Jacobian program gets the cotangent (softmax - onehot) / n.
func inputGrad(m *onnximport.Model, x *graph.Tensor, labels []int64, batch int) (*graph.Tensor, error) {
	g := m.Graph
	in := g.Inputs[0]
	n := x.Shape[0]
	if d := in.Shape[0]; d.N >= 0 {
		batch = d.N
	}
	batch = min(batch, n)
	sample := x.Numel() / n
	out := graph.NewTensor(graph.Float32, x.Shape)
	type vjp struct {
		p       *compile.Program
		x, seed *graph.Value
	}
	progs := map[int]*vjp{}
	for start := 0; start < n; start += batch {
		b := min(batch, n-start)
		v := progs[b]
		if v == nil {
			c := g.Clone()
			c.Outputs = c.Outputs[:1]
			p0, err := compile.Compile(c, compile.Options{Shapes: map[string][]int{in.Name: append([]int{b}, x.Shape[1:]...)}})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.Path, err)
			}
			seed := c.AddInput("logits_cotangent", graph.Float32, graph.StaticShape(p0.Outputs[0].StaticShape()...))
			p, err := compile.Compile(c, compile.Options{Shapes: map[string][]int{in.Name: append([]int{b}, x.Shape[1:]...)},
				Grad: &compile.GradSpec{Loss: c.Outputs[0], Seed: seed, Wrt: []*graph.Value{c.Inputs[0]}}})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.Path, err)
			}
			v = &vjp{p, c.Inputs[0], seed}
			progs[b] = v
		}
		chunk := graph.F32(append([]int{b}, x.Shape[1:]...), x.F[start*sample:(start+b)*sample])
		res, err := v.p.Forward(chunk)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Path, err)
		}
		seed := ceCotangent(res[0], labels[start:start+b], n)
		if err := v.p.Backward(seed); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Path, err)
		}
		copy(out.F[start*sample:], v.p.Grad(v.x).F)
	}
	return out, nil
}

// ceCotangent is d(sum of cross-entropies / n)/dlogits for a chunk: (softmax - onehot) / n.
func ceCotangent(logits *graph.Tensor, labels []int64, n int) *graph.Tensor {
	b, k := logits.Shape[0], logits.Shape[1]
	s := graph.NewTensor(graph.Float32, logits.Shape)
	for i := 0; i < b; i++ {
		row := logits.F[i*k : (i+1)*k]
		m := math.Inf(-1)
		for _, v := range row {
			m = max(m, float64(v))
		}
		z := 0.0
		for _, v := range row {
			z += math.Exp(float64(v) - m)
		}
		for j, v := range row {
			p := math.Exp(float64(v)-m) / z
			if int64(j) == labels[i] {
				p--
			}
			s.F[i*k+j] = float32(p / float64(n))
		}
	}
	return s
}

// forward runs the model over x in chunks of at most batch samples and
// returns the first output of every sample, concatenated.
func forward(m *onnximport.Model, x *graph.Tensor, xName string, batch int) (*graph.Tensor, error) {
	g := m.Graph
	if len(g.Inputs) != 1 {
		return nil, fmt.Errorf("%s: the model has %d inputs; hyperat-eval feeds one", m.Path, len(g.Inputs))
	}
	in := g.Inputs[0]
	if err := checkInput(in, x, xName); err != nil {
		return nil, err
	}
	for i, v := range x.F {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%s: value %d (sample %d) is %v; the model's input must be finite", xName, i, i/(x.Numel()/x.Shape[0]), v)
		}
	}
	n := x.Shape[0]
	if d := in.Shape[0]; d.N >= 0 {
		// a model exported with a fixed batch runs at that batch
		batch = d.N
		if n%batch != 0 {
			return nil, fmt.Errorf("%s: %d samples, but the model's input %q %s has a fixed batch of %d: give a multiple of it, or export the model with a dynamic batch",
				xName, n, in.Name, in.Shape, batch)
		}
	}
	batch = min(batch, n)
	sample := x.Numel() / n
	var out *graph.Tensor
	progs := map[int]*compile.Program{}
	for start := 0; start < n; start += batch {
		b := min(batch, n-start)
		p := progs[b]
		if p == nil {
			shape := append([]int{b}, x.Shape[1:]...)
			var err error
			p, err = compile.Compile(g, compile.Options{Shapes: map[string][]int{in.Name: shape}})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.Path, err)
			}
			progs[b] = p
		}
		chunk := graph.F32(append([]int{b}, x.Shape[1:]...), x.F[start*sample:(start+b)*sample])
		res, err := p.Run(chunk)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Path, err)
		}
		y := res[0]
		if y.DType != graph.Float32 || len(y.Shape) == 0 || y.Shape[0] != b {
			return nil, fmt.Errorf("%s: the first output is %s%v, not float32 logits with the batch first", m.Path, y.DType, y.Shape)
		}
		if out == nil {
			out = graph.NewTensor(graph.Float32, append([]int{n}, y.Shape[1:]...))
		}
		per := y.Numel() / b
		copy(out.F[start*per:], y.F)
	}
	return out, nil
}

// checkInput checks x against the model's input: float32, same rank, same
// non-batch dims, at least one sample.
func checkInput(in *graph.Value, x *graph.Tensor, xName string) error {
	if in.DType != graph.Float32 {
		return fmt.Errorf("the model's input %q is %s; hyperat-eval feeds float32 images", in.Name, in.DType)
	}
	if x.DType != graph.Float32 {
		return fmt.Errorf("%s: dtype %s, the model's input %q wants float32", xName, x.DType, in.Name)
	}
	mismatch := func(why string) error {
		return fmt.Errorf("%s: shape %s does not match the model's input %q %s (%s)", xName, shapeString(x.Shape), in.Name, in.Shape, why)
	}
	if in.Shape == nil {
		return fmt.Errorf("the model's input %q has no shape", in.Name)
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
