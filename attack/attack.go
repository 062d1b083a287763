package attack

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// Attack crafts L-infinity adversarial examples.
type Attack interface {
	// Name is the attack's name as Parse reads it: fgsm, pgd-20, apgd-t, ...
	Name() string
	// Run attacks every sample x[i] (pixels in [0, 1], x is [N, C, H, W])
	// with true label y[i] in the ball of radius eps. Only the samples the
	// model classifies correctly are attacked; the others are returned as
	// they are and reported as fooled.
	Run(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) (*Result, error)
}

// Result is what an attack returns.
type Result struct {
	// Adv holds one example per sample, [N, C, H, W]: every element lies
	// within eps of x's (|adv - x| <= eps exactly, in float64 arithmetic on
	// the float32 values) and in [0, 1].
	Adv *graph.Tensor
	// Fooled[i] says the model misclassifies Adv[i], as found by running the
	// model on Adv after the attack. A sample misclassified to begin with
	// keeps Adv[i] = x[i] when the attack's example is classified correctly,
	// so it is always fooled: the clean point is in the ball too.
	Fooled []bool
	// Pred[i] is the class the model gives Adv[i].
	Pred []int
	// By is set by AutoAttack only: By[i] names the attack of the suite
	// whose example Adv[i] is, for a sample it fooled ("" for a sample
	// misclassified to begin with, and for one no attack fooled).
	By []string
}

// Robust is the number of samples not fooled.
func (r *Result) Robust() int {
	n := 0
	for _, f := range r.Fooled {
		if !f {
			n++
		}
	}
	return n
}

// Seeds gives every sample its own random stream, so that what an attack
// does to a sample does not depend on the other samples in its batch nor on
// which of them an earlier attack already fooled: sample i draws from
// PCG(Seed, h) with h a hash of the attack's name and IDs[i].
type Seeds struct {
	Seed uint64
	// IDs names each sample's stream (its index in the dataset, say);
	// nil means 0, 1, ..., N-1.
	IDs []uint64
}

func (s Seeds) id(i int) uint64 {
	if s.IDs == nil {
		return uint64(i)
	}
	return s.IDs[i]
}

// rng returns the stream of sample i for the attack called name.
func (s Seeds) rng(name string, i int) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(s.Seed, splitmix(h.Sum64()^splitmix(s.id(i)))))
}

// sub returns the seeds of the samples idx.
func (s Seeds) sub(idx []int) Seeds {
	ids := make([]uint64, len(idx))
	for k, i := range idx {
		ids[k] = s.id(i)
	}
	return Seeds{Seed: s.Seed, IDs: ids}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// check validates the arguments every attack takes.
func check(m Model, x *graph.Tensor, y []int, eps float64, s Seeds) error {
	if m == nil {
		return errors.New("no model")
	}
	if !(eps > 0 && eps <= 1) {
		return fmt.Errorf("eps must be in (0, 1] (pixels are in [0, 1]), got %v", eps)
	}
	if x == nil || x.DType != graph.Float32 || len(x.Shape) != 4 || x.Shape[0] < 1 || len(x.F) != x.Numel() {
		return fmt.Errorf("images must be float32 [N, C, H, W] with N >= 1, got %v", shapeOf(x))
	}
	n := x.Shape[0]
	if len(y) != n {
		return fmt.Errorf("%d images but %d labels", n, len(y))
	}
	if s.IDs != nil && len(s.IDs) != n {
		return fmt.Errorf("%d images but %d seed ids", n, len(s.IDs))
	}
	k := m.Classes()
	if k < 2 {
		return fmt.Errorf("the model has %d classes, want at least 2", k)
	}
	for i, v := range y {
		if v < 0 || v >= k {
			return fmt.Errorf("label %d of sample %d is outside the model's %d classes", v, i, k)
		}
	}
	for i, v := range x.F {
		if !(v >= 0 && v <= 1) {
			d := graph.Numel(x.Shape[1:])
			return fmt.Errorf("pixel %d of sample %d is %v: images must be pixels in [0, 1]", i%d, i/d, v)
		}
	}
	return nil
}

// ball holds, per element, the interval [lo, hi] = [x - eps, x + eps] ∩ [0, 1]
// as float32 values that lie inside it exactly (rounded inwards).
type ball struct{ lo, hi []float32 }

func newBall(x []float32, eps float64) ball {
	b := ball{make([]float32, len(x)), make([]float32, len(x))}
	for i, v := range x {
		lo, hi := max(float64(v)-eps, 0), min(float64(v)+eps, 1)
		l, h := float32(lo), float32(hi)
		if float64(l) < lo {
			l = math.Nextafter32(l, 2)
		}
		if float64(h) > hi {
			h = math.Nextafter32(h, -1)
		}
		b.lo[i], b.hi[i] = l, h
	}
	return b
}

// project clips v (the elements from off on) into the ball.
func (b ball) project(v []float32, off int) {
	lo, hi := b.lo[off:off+len(v)], b.hi[off:off+len(v)]
	for i, e := range v {
		v[i] = min(max(e, lo[i]), hi[i])
	}
}

// classify runs the model on rows (n flat images) in one batch and returns
// the class of each.
func classify(r *runner, rows []float32, n int) ([]int, error) {
	l, err := r.logits(rows, n)
	if err != nil {
		return nil, err
	}
	pred := make([]int, n)
	for i := range pred {
		pred[i] = loss.Argmax(l[i*r.classes : (i+1)*r.classes])
	}
	return pred, nil
}

// predictions runs the model on rows (n flat images) in one batch and
// returns whether each is classified as y.
func predictions(r *runner, rows []float32, n int, y []int) ([]bool, error) {
	pred, err := classify(r, rows, n)
	if err != nil {
		return nil, err
	}
	ok := make([]bool, n)
	for i := range ok {
		ok[i] = pred[i] == y[i]
	}
	return ok, nil
}

// finish checks adv with one forward pass and builds the Result; samples
// wrong on x (clean[i] false) keep x when the model is right on adv (which
// only a model that answers differently on the same input can make happen,
// since such samples are not attacked; they are run once more for Pred).
func finish(r *runner, x *graph.Tensor, y []int, adv []float32, clean []bool) (*Result, error) {
	n := x.Shape[0]
	pred, err := classify(r, adv, n)
	if err != nil {
		return nil, err
	}
	res := &Result{Adv: graph.F32(x.Shape, adv), Fooled: make([]bool, n), Pred: pred}
	d := r.dim
	var back []int
	for i := range res.Fooled {
		switch {
		case pred[i] != y[i]:
			res.Fooled[i] = true
		case !clean[i]:
			copy(adv[i*d:(i+1)*d], x.F[i*d:(i+1)*d])
			res.Fooled[i] = true
			back = append(back, i)
		}
	}
	if len(back) > 0 {
		p, err := classify(r, gather(nil, x.F, back, d), len(back))
		if err != nil {
			return nil, err
		}
		for k, i := range back {
			pred[i] = p[k]
		}
	}
	return res, nil
}

// gather copies the rows idx of src (rows of d values) into dst.
func gather(dst, src []float32, idx []int, d int) []float32 {
	dst = dst[:0]
	for _, i := range idx {
		dst = append(dst, src[i*d:(i+1)*d]...)
	}
	return dst
}

// sign is -1, 0 or 1.
func sign(v float32) float32 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
