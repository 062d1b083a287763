// Package dist joins the processes of a data-parallel run into a group and
// sums their contributions to each step over TCP, with the standard library's
// net/rpc (gob-encoded), in a fixed order: the sum is the one a single process
// computes with SumInOrder over the same parts, bit for bit, whichever process
// computed which part.
//
// Rank 0 is the hub: the other ranks dial it, send their parts of a step and
// receive the sum. A rank that dies closes its connection and fails the step
// on every rank at once; a rank that hangs fails it after the timeout. The
// group is not repaired: the processes exit, are restarted (a Kubernetes Job
// does that) and resume from the last checkpoint, whose position rank 0 tells
// the others when they join.
package dist

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Part is one unit of work's contribution to a step: a micro-batch's
// gradient (Data) and its statistics (Stats: summed losses, counts), with its
// index in the step's fixed order.
type Part struct {
	Index int
	Data  []float32
	Stats []float64
}

// Sum is the result of a step: the parts' Data and Stats added in index order.
type Sum struct {
	Data  []float32
	Stats []float64
}

// SumInOrder adds the parts' Data and Stats element by element in the order
// of their indices, which must be exactly 0..total-1 once each, starting
// from part 0's values. Both the single-process run and the group's hub call
// it, so both add the same numbers in the same order.
func SumInOrder(parts []Part, total int) (Sum, error) {
	if len(parts) != total || total == 0 {
		return Sum{}, fmt.Errorf("a step needs parts 0 to %d, got %d parts", total-1, len(parts))
	}
	ps := append([]Part(nil), parts...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Index < ps[j].Index })
	for i, p := range ps {
		if p.Index != i {
			return Sum{}, fmt.Errorf("a step needs parts 0 to %d once each: %s", total-1, describeIndices(ps))
		}
		if len(p.Data) != len(ps[0].Data) || len(p.Stats) != len(ps[0].Stats) {
			return Sum{}, fmt.Errorf("part %d holds %d values and %d statistics, part 0 %d and %d",
				p.Index, len(p.Data), len(p.Stats), len(ps[0].Data), len(ps[0].Stats))
		}
	}
	s := Sum{Data: append([]float32(nil), ps[0].Data...), Stats: append([]float64(nil), ps[0].Stats...)}
	for _, p := range ps[1:] {
		for j, v := range p.Data {
			s.Data[j] += v
		}
		for j, v := range p.Stats {
			s.Stats[j] += v
		}
	}
	return s, nil
}

func describeIndices(ps []Part) string {
	idx := make([]int, len(ps))
	for i, p := range ps {
		idx[i] = p.Index
	}
	return fmt.Sprint("got ", idx)
}

// Config says where a process stands in the group.
type Config struct {
	Rank, Size int
	// Addr is rank 0's host:port; rank 0 listens on its port on every
	// interface (Listen overrides that), the others dial it.
	Addr   string
	Listen string
	// Run identifies the run (a digest of the settings every rank must
	// share); a rank that joins with another is refused.
	Run string
	// Timeout bounds every wait on another rank: joining, and each step
	// after this rank's own contribution.
	Timeout time.Duration
}

func (c Config) check() error {
	switch {
	case c.Size < 1:
		return fmt.Errorf("a group of %d processes", c.Size)
	case c.Rank < 0 || c.Rank >= c.Size:
		return fmt.Errorf("rank %d is not in a group of %d (0 to %d)", c.Rank, c.Size, c.Size-1)
	case c.Size > 1 && c.Addr == "":
		return errors.New("a group of several processes needs rank 0's address")
	case c.Timeout <= 0:
		return fmt.Errorf("timeout %v: must be positive", c.Timeout)
	}
	return nil
}

// ErrPeerLost is wrapped by the error of a step that another rank left (died,
// closed its connection or did not answer within the timeout).
var ErrPeerLost = errors.New("a process of the group is gone")

// Group is this process's membership; its methods are called by one
// goroutine, step after step.
type Group struct {
	cfg  Config
	hub  *hub    // rank 0
	peer *client // the other ranks
	// Hello is rank 0's message to every rank at joining (the position to
	// resume from); on rank 0 it is what it sent.
	Hello []byte
}

// Join forms the group: rank 0 waits until every other rank has connected
// and sends them hello; the others dial rank 0 (retrying while it starts)
// and receive it. A group of one needs no network.
func Join(cfg Config, hello []byte) (*Group, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	g := &Group{cfg: cfg}
	var err error
	switch {
	case cfg.Size == 1:
		g.Hello = hello
	case cfg.Rank == 0:
		g.hub, err = startHub(cfg, hello)
		g.Hello = hello
	default:
		g.peer, g.Hello, err = dial(cfg)
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Rank and Size are this process's place in the group.
func (g *Group) Rank() int { return g.cfg.Rank }
func (g *Group) Size() int { return g.cfg.Size }

// Step contributes this rank's parts of step number step and returns the sum
// over the parts of every rank, whose indices together must be 0..total-1.
// Steps are numbered by the caller and must be taken in the same order on
// every rank.
func (g *Group) Step(step int64, parts []Part, total int) (Sum, error) {
	switch {
	case g.hub != nil:
		return g.hub.step(step, 0, parts, total)
	case g.peer != nil:
		return g.peer.step(step, parts, total)
	}
	return SumInOrder(parts, total)
}

// Close leaves the group; the other ranks' next step fails.
func (g *Group) Close() error {
	switch {
	case g.hub != nil:
		return g.hub.close()
	case g.peer != nil:
		return g.peer.close()
	}
	return nil
}
