package data

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// PCG stream constants: each use of a seed draws from its own stream, so the
// validation split and a shuffle made with the same seed are unrelated.
const (
	streamShuffle uint64 = 0x68797065726174_01
	streamSplit   uint64 = 0x68797065726174_02
)

// The random algorithms here are fixed, not borrowed from a library whose
// internals could change: PCG-DXSM (math/rand/v2's PCG, whose output for a seed
// is specified) feeds Lemire's multiply-and-reject bounded integers and a
// Fisher-Yates shuffle from the end. The same seed gives the same order on every
// machine and Go version.

// uniform returns a uniformly distributed integer in [0, n), n > 0.
func uniform(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		threshold := -n % n // 2^64 mod n
		for lo < threshold {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}

// fisherYates permutes idx in place: for i from the end, swap idx[i] with a
// uniformly chosen idx[j], j <= i.
func fisherYates(idx []int, src *rand.PCG) {
	for i := len(idx) - 1; i > 0; i-- {
		j := uniform(src, uint64(i)+1)
		idx[i], idx[j] = idx[j], idx[i]
	}
}

// Shuffle permutes indices in place, deterministically for a given seed: the
// same slice and seed give the same order on every machine.
func Shuffle(indices []int, seed uint64) {
	fisherYates(indices, rand.NewPCG(seed, streamShuffle))
}

// Range returns the indices 0..n-1 in order.
func Range(n int) []int {
	idx := make([]int, max(n, 0))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// ValidationSplit carves a held-out validation set from n training examples.
//
// size chooses how many: a fraction of n when 0 < size < 1 (rounded to the
// nearest count, at least 1), or a count when size >= 1 (it must then be a whole
// number); 0 gives an empty validation set. The examples are chosen by a seeded
// shuffle of 0..n-1 (see Shuffle; a stream of its own, so it differs from
// Shuffle with the same seed): the first ones go to validation, the rest to
// training. Both returned lists are sorted ascending, so they do not depend on
// anything but n, size and seed. At least one example is always left for training.
func ValidationSplit(n int, size float64, seed uint64) (train, val []int, err error) {
	if n < 0 {
		return nil, nil, errorf(ErrArgument, "", "validation split of %d examples", n)
	}
	var k int
	switch {
	case math.IsNaN(size) || math.IsInf(size, 0) || size < 0:
		return nil, nil, errorf(ErrArgument, "", "validation size %v: want a fraction in (0, 1) or a count", size)
	case size == 0:
		k = 0
	case size < 1:
		k = max(int(math.Round(size*float64(n))), 1)
	default:
		if size != math.Trunc(size) {
			return nil, nil, errorf(ErrArgument, "", "validation size %v: a count must be a whole number (or give a fraction below 1)", size)
		}
		if size >= float64(n) {
			return nil, nil, errorf(ErrArgument, "", "a validation set of %v examples leaves none of the %d for training", size, n)
		}
		k = int(size)
	}
	if k >= n && k > 0 {
		return nil, nil, errorf(ErrArgument, "", "a validation set of %d examples leaves none of the %d for training", k, n)
	}
	perm := Range(n)
	fisherYates(perm, rand.NewPCG(seed, streamSplit))
	val = slices.Clone(perm[:k])
	train = slices.Clone(perm[k:])
	slices.Sort(val)
	slices.Sort(train)
	return train, val, nil
}
