package hyperat

import (
	"fmt"
	"math/rand/v2"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// An iteration runs its batch micro-batch by micro-batch, so that its memory
// is that of one micro-batch: each micro-batch's attack and training pass
// give its contribution to the gradient (MicroGrad), and the contributions
// are added in micro-batch order (Reduce). A ViT has no batch statistics, so
// the sum is the batch's gradient up to float32 rounding; and since a
// contribution depends only on its arguments, workers that compute their
// share of the micro-batches and reduce them in the same order get the same
// bits as one worker.

// Micro is one micro-batch: the rows [Lo, Hi) of the iteration's batch.
type Micro struct{ Lo, Hi int }

// MicroBatches splits a batch of n images into micro-batches of size images
// (the last one smaller when size does not divide n), in order.
func MicroBatches(n, size int) []Micro {
	size = max(size, 1)
	var ms []Micro
	for lo := 0; lo < n; lo += size {
		ms = append(ms, Micro{lo, min(lo+size, n)})
	}
	return ms
}

// ImageStreams are the random streams of the images of iteration it, one
// per position in its batch: image j's attack draws its random start from
// ImageRand(seed, streams[j]) whatever micro-batch it falls in.
func ImageStreams(it, n int) []uint64 {
	s := make([]uint64, n)
	for j := range s {
		s[j] = splitmix(splitmix(uint64(it)+0x5eed) ^ uint64(j))
	}
	return s
}

// ImageRand is the random stream named stream of the run seeded with seed.
func ImageRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// splitmix is SplitMix64's finalizer: distinct inputs give well-spread,
// distinct stream names.
func splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// MicroAttack is how MicroGrad crafts a micro-batch's adversarial examples:
// the defense's attack at radius Eps with Steps steps, matrix products in
// Precision, random starts from the run's Seed.
type MicroAttack struct {
	Def       Defense
	Eps       float64
	Steps     int
	Precision kernels.Precision
	Seed      uint64
}

// MicroGrad computes one micro-batch's contribution to an iteration's
// gradient. It crafts the adversarial examples of images x (labels y) as a
// says, against the model with parameters ps, image i's random start drawn
// from ImageRand(a.Seed, streams[i]); then it sets g (same layout as Params:
// the LoRA factors and the trained weights; cleared first) to the gradient
// of w times the defense's mean loss over the micro-batch, and returns w
// times that loss. With w = (images in the micro-batch) / (images in the
// batch), the contributions add up to the batch's mean loss and its
// gradient. The net's programs at the micro-batch's size (and twice it for
// a defense with a clean pass) are compiled on first use.
func (n *Net) MicroGrad(a MicroAttack, ps *Params, x *graph.Tensor, y []int, streams []uint64, w float64, g *Params) (float64, error) {
	def := a.Def
	adv, err := def.Attack(netModel{n, ps, a.Precision}, x, y, a.Eps, a.Steps, func(i int) *rand.Rand { return ImageRand(a.Seed, streams[i]) })
	if err != nil {
		return 0, err
	}
	g.clear()
	var loss float64
	if def.NeedsClean() {
		err = n.PairGrads(x, adv, ps, func(zc, za *graph.Tensor) (*graph.Tensor, *graph.Tensor) {
			var gc, ga *graph.Tensor
			loss, gc, ga = def.Loss(zc, za, y)
			return scale(gc, w), scale(ga, w)
		}, g)
	} else {
		_, err = n.ParamGrads(adv, ps, func(za *graph.Tensor) *graph.Tensor {
			var ga *graph.Tensor
			loss, _, ga = def.Loss(nil, za, y)
			return scale(ga, w)
		}, g)
	}
	return w * loss, err
}

// Accumulate adds a micro-batch's contribution part into sum, element by
// element; the first contribution (first) is copied, not added to zeros
// (0 + -0 is +0), exactly as dist.SumInOrder starts from a copy of part 0.
// Called for micro-batches 0, 1, 2, ... in order, it gives the iteration's
// gradient the bits a group of processes gets from dist.SumInOrder over the
// same contributions, however and wherever they were computed.
func Accumulate(sum, part *Params, first bool) {
	for i := range sum.A {
		accumulate(sum.A[i], part.A[i], first)
		accumulate(sum.B[i], part.B[i], first)
	}
	for i := range sum.Train {
		accumulate(sum.Train[i], part.Train[i], first)
	}
}

func accumulate(dst, src *graph.Tensor, first bool) {
	if first {
		copy(dst.F, src.F)
		return
	}
	addTo(dst, src)
}

// tensors are p's tensors in a fixed order: the factors A and B of each
// adapted layer, then the trained weights.
func (p *Params) tensors() []*graph.Tensor {
	var ts []*graph.Tensor
	for i := range p.A {
		ts = append(ts, p.A[i], p.B[i])
	}
	return append(ts, p.Train...)
}

// size is the number of values of p.
func (p *Params) size() int {
	n := 0
	for _, t := range p.tensors() {
		n += len(t.F)
	}
	return n
}

// Flat is a copy of every value of p, tensor after tensor (the form in which
// a contribution travels between processes).
func (p *Params) Flat() []float32 {
	f := make([]float32, 0, p.size())
	for _, t := range p.tensors() {
		f = append(f, t.F...)
	}
	return f
}

// SetFlat sets p's values from f, which Flat of a parameter set of the same
// shapes made.
func (p *Params) SetFlat(f []float32) error {
	if n := p.size(); len(f) != n {
		return fmt.Errorf("a gradient of %d values for parameters of %d", len(f), n)
	}
	off := 0
	for _, t := range p.tensors() {
		off += copy(t.F, f[off:])
	}
	return nil
}

// clear zeroes every tensor of p.
func (p *Params) clear() {
	for _, ts := range [][]*graph.Tensor{p.A, p.B, p.Train} {
		for _, t := range ts {
			clear(t.F)
		}
	}
}

// zerosLike is a cleared parameter set of p's shapes.
func zerosLike(p *Params) *Params {
	z := &Params{}
	for i := range p.A {
		z.A = append(z.A, graph.NewTensor(graph.Float32, p.A[i].Shape))
		z.B = append(z.B, graph.NewTensor(graph.Float32, p.B[i].Shape))
	}
	for _, t := range p.Train {
		z.Train = append(z.Train, graph.NewTensor(graph.Float32, t.Shape))
	}
	return z
}

// scale multiplies t by w in place (w = 1 leaves every bit) and returns it.
func scale(t *graph.Tensor, w float64) *graph.Tensor {
	if t == nil || w == 1 {
		return t
	}
	f := float32(w)
	for i := range t.F {
		t.F[i] *= f
	}
	return t
}
