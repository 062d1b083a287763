package dist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/rpc"
	"sync"
	"time"
)

// wirePart is a Part as it travels: the float32 values as little-endian
// bytes, which gob sends as one block (it would send each float32 as a
// variable-length float64).
type wirePart struct {
	Index int
	Data  []byte
	Stats []float64
}

func toWire(ps []Part) []wirePart {
	out := make([]wirePart, len(ps))
	for i, p := range ps {
		b := make([]byte, 4*len(p.Data))
		for j, v := range p.Data {
			binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(v))
		}
		out[i] = wirePart{Index: p.Index, Data: b, Stats: p.Stats}
	}
	return out
}

func fromWire(ws []wirePart) ([]Part, error) {
	out := make([]Part, len(ws))
	for i, w := range ws {
		if len(w.Data)%4 != 0 {
			return nil, fmt.Errorf("part %d: %d bytes is not a whole number of float32 values", w.Index, len(w.Data))
		}
		d := make([]float32, len(w.Data)/4)
		for j := range d {
			d[j] = math.Float32frombits(binary.LittleEndian.Uint32(w.Data[4*j:]))
		}
		out[i] = Part{Index: w.Index, Data: d, Stats: w.Stats}
	}
	return out, nil
}

// JoinArgs, StepArgs and WireSum are the messages of the hub's RPC service.
type JoinArgs struct {
	Rank, Size int
	Run        string
}

type JoinReply struct{ Hello []byte }

type StepArgs struct {
	Rank  int
	Step  int64
	Total int
	Parts []wirePart
}

type WireSum struct {
	Data  []byte
	Stats []float64
}

// round is one step's gathering of parts.
type round struct {
	step  int64
	total int
	parts map[int][]Part // by rank
	done  chan struct{}  // closed once sum or err is set
	sum   Sum
	err   error
}

// hub is rank 0's side: it gathers every rank's parts of a step, adds them
// with SumInOrder and answers each rank with the sum.
type hub struct {
	cfg    Config
	hello  []byte
	ln     net.Listener
	mu     sync.Mutex
	joined map[int]bool
	conns  sync.WaitGroup
	open   map[net.Conn]bool
	all    chan struct{} // closed when every rank has joined
	cur    *round
	broken error // set once a rank is lost: every later step fails with it
	closed bool
}

func startHub(cfg Config, hello []byte) (*hub, error) {
	addr := cfg.Listen
	if addr == "" {
		_, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("rank 0's address %q: %v", cfg.Addr, err)
		}
		addr = ":" + port
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rank 0 cannot listen on %s: %v", addr, err)
	}
	h := &hub{cfg: cfg, hello: hello, ln: ln, joined: map[int]bool{}, open: map[net.Conn]bool{}, all: make(chan struct{})}
	go h.accept()
	select {
	case <-h.all:
		return h, nil
	case <-time.After(cfg.Timeout):
		h.mu.Lock()
		missing := h.missing(func(r int) bool { return r == 0 || h.joined[r] })
		h.mu.Unlock()
		h.close()
		return nil, fmt.Errorf("%w: rank%s %v did not join within %v", ErrPeerLost, plural(len(missing)), missing, cfg.Timeout)
	}
}

func (h *hub) accept() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return // closed
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			c.Close()
			return
		}
		h.open[c] = true
		h.mu.Unlock()
		h.conns.Add(1)
		go h.serve(c)
	}
}

// serve runs one rank's connection with a server of its own, so that the
// rank it joined as is known when the connection ends.
func (h *hub) serve(c net.Conn) {
	defer h.conns.Done()
	svc := &conn{h: h, rank: -1}
	s := rpc.NewServer()
	if err := s.RegisterName("Hub", svc); err != nil {
		panic(err) // the service's methods are fixed: a programming error
	}
	s.ServeConn(c)
	h.mu.Lock()
	delete(h.open, c)
	h.mu.Unlock()
	if svc.rank > 0 {
		h.lose(svc.rank, "closed its connection")
	}
}

// conn is the RPC service of one connection.
type conn struct {
	h    *hub
	rank int
}

func (c *conn) Join(a JoinArgs, r *JoinReply) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.broken != nil:
		// the group of an earlier start, not yet gone: the rank dials again
		return h.broken
	case a.Size != h.cfg.Size:
		return fmt.Errorf("rank %d joined a group of %d, rank 0's has %d", a.Rank, a.Size, h.cfg.Size)
	case a.Run != h.cfg.Run:
		return fmt.Errorf("rank %d runs other settings than rank 0 (run %q, rank 0's %q)", a.Rank, a.Run, h.cfg.Run)
	case a.Rank < 1 || a.Rank >= h.cfg.Size:
		return fmt.Errorf("rank %d is not a joining rank of a group of %d", a.Rank, h.cfg.Size)
	case h.joined[a.Rank]:
		return fmt.Errorf("rank %d joined twice", a.Rank)
	}
	h.joined[a.Rank] = true
	c.rank = a.Rank
	if len(h.joined) == h.cfg.Size-1 {
		close(h.all)
	}
	r.Hello = h.hello
	return nil
}

func (c *conn) Step(a StepArgs, r *WireSum) error {
	if c.rank < 1 || a.Rank != c.rank {
		return fmt.Errorf("a step from rank %d on the connection of rank %d", a.Rank, c.rank)
	}
	parts, err := fromWire(a.Parts)
	if err != nil {
		return err
	}
	s, err := c.h.step(a.Step, a.Rank, parts, a.Total)
	if err != nil {
		return err
	}
	r.Data = toWire([]Part{{Data: s.Data}})[0].Data
	r.Stats = s.Stats
	return nil
}

// step adds rank's parts to the round of step and waits for the sum.
func (h *hub) step(step int64, rank int, parts []Part, total int) (Sum, error) {
	rd, err := h.contribute(step, rank, parts, total)
	if err != nil {
		return Sum{}, err
	}
	t := time.NewTimer(h.cfg.Timeout)
	defer t.Stop()
	select {
	case <-rd.done:
	case <-t.C:
		h.mu.Lock()
		missing := h.missing(func(r int) bool { _, ok := rd.parts[r]; return ok })
		h.mu.Unlock()
		h.fail(rd, fmt.Errorf("%w: rank%s %v sent nothing for step %d within %v", ErrPeerLost, plural(len(missing)), missing, step, h.cfg.Timeout))
		<-rd.done
	}
	return rd.sum, rd.err
}

func (h *hub) contribute(step int64, rank int, parts []Part, total int) (*round, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broken != nil {
		return nil, h.broken
	}
	if h.cur == nil || h.cur.step != step {
		if h.cur != nil && !isDone(h.cur) {
			return nil, fmt.Errorf("rank %d sent step %d while step %d is gathered: the ranks are out of step", rank, step, h.cur.step)
		}
		if h.cur != nil && step < h.cur.step {
			return nil, fmt.Errorf("rank %d sent step %d after step %d", rank, step, h.cur.step)
		}
		h.cur = &round{step: step, total: total, parts: map[int][]Part{}, done: make(chan struct{})}
	}
	rd := h.cur
	switch {
	case rd.total != total:
		return nil, fmt.Errorf("rank %d counts %d parts in step %d, another rank %d", rank, total, step, rd.total)
	case rd.parts[rank] != nil:
		return nil, fmt.Errorf("rank %d sent step %d twice", rank, step)
	}
	if parts == nil {
		parts = []Part{}
	}
	rd.parts[rank] = parts
	if len(rd.parts) == h.cfg.Size {
		var all []Part
		for r := 0; r < h.cfg.Size; r++ {
			all = append(all, rd.parts[r]...)
		}
		rd.sum, rd.err = SumInOrder(all, total)
		close(rd.done)
	}
	return rd, nil
}

// lose breaks the group: the step being gathered and every later one fail.
func (h *hub) lose(rank int, why string) {
	err := fmt.Errorf("%w: rank %d %s", ErrPeerLost, rank, why)
	h.mu.Lock()
	if h.broken == nil && !h.closed {
		h.broken = err
	}
	rd := h.cur
	h.mu.Unlock()
	if rd != nil {
		h.fail(rd, err)
	}
}

func (h *hub) fail(rd *round, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !isDone(rd) {
		rd.err = err
		close(rd.done)
	}
	if h.broken == nil && !h.closed {
		h.broken = err
	}
}

func isDone(rd *round) bool {
	select {
	case <-rd.done:
		return true
	default:
		return false
	}
}

// missing lists the ranks for which has is false.
func (h *hub) missing(has func(int) bool) []int {
	var out []int
	for r := 0; r < h.cfg.Size; r++ {
		if !has(r) {
			out = append(out, r)
		}
	}
	return out
}

// close stops listening and waits a moment for the other ranks to hang up
// (they do after their last step, once its answer has reached them), then
// closes their connections.
func (h *hub) close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	err := h.ln.Close()
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(min(h.cfg.Timeout, 2*time.Second)):
		h.mu.Lock()
		for c := range h.open {
			c.Close()
		}
		h.mu.Unlock()
		<-done
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
