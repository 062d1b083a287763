package app

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
	"strconv"
	"strings"

	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
	"github.com/hyperat/hyperat/kernels/vmath"
)

// Shard modes: which batches of the image list a shard takes.
const (
	shardInterleaved = "interleaved" // batches I, I+N, I+2N, ...
	shardContiguous  = "contiguous"  // one run of consecutive batches
)

// shardSpec is --shard I/N with --shard-mode. The unit of a shard is a
// batch of the whole list (--batch images, the last one shorter): every
// image is evaluated in the same batch, beside the same images, whatever N
// and whichever shard computes it, so that its numbers are the ones a single
// run gives, bit for bit, and the shards' reports merge into that run's.
type shardSpec struct {
	Index int    `json:"index"`
	Count int    `json:"count"`
	Mode  string `json:"mode"`
}

func (s shardSpec) String() string { return fmt.Sprintf("%d/%d %s", s.Index, s.Count, s.Mode) }

// parseShard reads --shard I/N and --shard-mode.
func parseShard(spec, mode string) (*shardSpec, error) {
	is, ns, ok := strings.Cut(spec, "/")
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if !ok || err1 != nil || err2 != nil || strconv.Itoa(i) != is || strconv.Itoa(n) != ns {
		return nil, fmt.Errorf("--shard %q: want I/N, two whole numbers, e.g. 0/8", spec)
	}
	switch {
	case n < 1:
		return nil, fmt.Errorf("--shard %q: the number of shards must be at least 1", spec)
	case i < 0 || i >= n:
		return nil, fmt.Errorf("--shard %q: the index must be from 0 to %d (shards are numbered from 0, as a Job's completion index)", spec, n-1)
	case mode != shardInterleaved && mode != shardContiguous:
		return nil, fmt.Errorf("--shard-mode %q: want %s or %s", mode, shardInterleaved, shardContiguous)
	}
	return &shardSpec{Index: i, Count: n, Mode: mode}, nil
}

// batches are the numbers of the batches of the list (nb in all) that the
// shard takes, in order.
func (s shardSpec) batches(nb int) []int {
	var bs []int
	if s.Mode == shardInterleaved {
		for b := s.Index; b < nb; b += s.Count {
			bs = append(bs, b)
		}
		return bs
	}
	for b := s.Index * nb / s.Count; b < (s.Index+1)*nb/s.Count; b++ {
		bs = append(bs, b)
	}
	return bs
}

// positions are the places in the list (n images, in batches of batch) of
// the shard's images, in order: its batches one after the other. Only the
// last batch of the list is short, and it is the shard's last, so the
// shard's own batches of batch images are the list's.
func (s shardSpec) positions(n, batch int) ([]int, error) {
	nb := (n + batch - 1) / batch
	if s.Count > nb {
		return nil, fmt.Errorf("--shard %d/%d: %d images in batches of %d make %d batches, fewer than %d shards (a shard takes whole batches): give at most %d shards, or a smaller --batch",
			s.Index, s.Count, n, batch, nb, s.Count, nb)
	}
	var pos []int
	for _, b := range s.batches(nb) {
		for p := b * batch; p < min((b+1)*batch, n); p++ {
			pos = append(pos, p)
		}
	}
	return pos, nil
}

// kernelsVariant names the kernels that compute the numbers: shards that
// ran on CPUs with other instruction sets do not agree bit for bit.
func kernelsVariant() string { return "sgemm " + kernels.Variant() + ", vmath " + vmath.Variant() }

// imagesSHA256 names the images as evaluated (after any conversion), their
// labels and their indices in the dataset.
func imagesSHA256(x *graph.Tensor, y, idx []int) string {
	h := sha256.New()
	hashFloats(h, x.F)
	hashInts(h, y)
	hashInts(h, idx)
	return hex.EncodeToString(h.Sum(nil))
}

// listSHA256 is imagesSHA256 of the images list of v, converted batch
// images at a time, so that a shard names the whole list without holding it.
func listSHA256(v *data.View, list []int, batch int) (string, error) {
	h := sha256.New()
	y := make([]int, 0, len(list))
	for lo := 0; lo < len(list); lo += batch {
		xb, yb, err := v.Batch(list[lo:min(lo+batch, len(list))])
		if err != nil {
			return "", err
		}
		hashFloats(h, xb.F)
		y = append(y, yb...)
	}
	hashInts(h, y)
	hashInts(h, list)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFloats(h hash.Hash, f []float32) {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	h.Write(b)
}

func hashInts(h hash.Hash, s []int) {
	b := make([]byte, 8*len(s))
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	h.Write(b)
}
