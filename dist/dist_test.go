package dist

import (
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// randomParts draws total parts of n values each, with values of very
// different magnitudes so that the order of the additions shows in the bits.
func randomParts(rng *rand.Rand, total, n int) []Part {
	ps := make([]Part, total)
	for i := range ps {
		d := make([]float32, n)
		for j := range d {
			d[j] = float32(rng.NormFloat64() * float64(int(1)<<rng.IntN(20)))
		}
		ps[i] = Part{Index: i, Data: d, Stats: []float64{rng.Float64(), float64(i)}}
	}
	return ps
}

// group joins size ranks on the loopback interface, each in a goroutine,
// and returns them in rank order.
func group(t *testing.T, size int, timeout time.Duration, hello []byte) []*Group {
	t.Helper()
	addr := freeAddr(t)
	gs := make([]*Group, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r := range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h []byte
			if r == 0 {
				h = hello
			}
			gs[r], errs[r] = Join(Config{Rank: r, Size: size, Addr: addr, Run: "run", Timeout: timeout}, h)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	t.Cleanup(func() {
		for _, g := range gs {
			g.Close()
		}
	})
	return gs
}

// steps runs each rank's steps concurrently; assign[s][r] are the part
// indices rank r contributes to step s.
func steps(gs []*Group, parts [][]Part, assign [][][]int) ([][]Sum, []error) {
	sums := make([][]Sum, len(gs))
	errs := make([]error, len(gs))
	var wg sync.WaitGroup
	for r, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range parts {
				var mine []Part
				for _, i := range assign[s][r] {
					mine = append(mine, parts[s][i])
				}
				sum, err := g.Step(int64(s), mine, len(parts[s]))
				if err != nil {
					errs[r] = err
					return
				}
				sums[r] = append(sums[r], sum)
			}
		}()
	}
	wg.Wait()
	return sums, errs
}

func equalBits(a, b Sum) bool {
	if len(a.Data) != len(b.Data) || len(a.Stats) != len(b.Stats) {
		return false
	}
	for i := range a.Data {
		if a.Data[i] != b.Data[i] {
			return false
		}
	}
	for i := range a.Stats {
		if a.Stats[i] != b.Stats[i] {
			return false
		}
	}
	return true
}

// Every rank of groups of 1, 2 and 4 gets, at every step, exactly the sum one
// process computes, whichever rank holds which parts; and the sum depends on
// the order (a sum in another order differs), so the test can tell.
func TestGroupSumsInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const nsteps, total, n = 5, 8, 1000
	parts := make([][]Part, nsteps)
	want := make([]Sum, nsteps)
	for s := range parts {
		parts[s] = randomParts(rng, total, n)
		var err error
		if want[s], err = SumInOrder(parts[s], total); err != nil {
			t.Fatal(err)
		}
	}
	rev := append([]Part(nil), parts[0]...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	reversed := Sum{Data: append([]float32(nil), rev[0].Data...)}
	for _, p := range rev[1:] {
		for j, v := range p.Data {
			reversed.Data[j] += v
		}
	}
	if equalBits(Sum{Data: reversed.Data}, Sum{Data: want[0].Data}) {
		t.Fatal("the test's parts add to the same bits in any order: it could not tell a wrong order")
	}
	for _, size := range []int{1, 2, 4} {
		gs := group(t, size, 10*time.Second, []byte("resume at 7"))
		for r, g := range gs {
			if string(g.Hello) != "resume at 7" {
				t.Errorf("size %d, rank %d: hello %q", size, r, g.Hello)
			}
		}
		assign := make([][][]int, nsteps)
		for s := range assign {
			assign[s] = make([][]int, size)
			for _, i := range rng.Perm(total) { // any rank, any order, some ranks none
				r := rng.IntN(size)
				assign[s][r] = append(assign[s][r], i)
			}
		}
		sums, errs := steps(gs, parts, assign)
		for r := range gs {
			if errs[r] != nil {
				t.Fatalf("size %d, rank %d: %v", size, r, errs[r])
			}
			for s := range nsteps {
				if !equalBits(sums[r][s], want[s]) {
					t.Errorf("size %d, rank %d, step %d: the sum differs from one process's", size, r, s)
				}
			}
		}
	}
}

func TestSumInOrderRefusesWrongParts(t *testing.T) {
	p := func(i, n int) Part { return Part{Index: i, Data: make([]float32, n)} }
	for _, c := range []struct {
		parts []Part
		total int
		want  string
	}{
		{[]Part{p(0, 2), p(0, 2)}, 2, "once each"},
		{[]Part{p(0, 2), p(2, 2)}, 2, "once each"},
		{[]Part{p(0, 2)}, 2, "got 1 parts"},
		{[]Part{p(0, 2), p(1, 3)}, 2, "holds 3 values"},
	} {
		if _, err := SumInOrder(c.parts, c.total); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v parts of %d: error %v, want one with %q", len(c.parts), c.total, err, c.want)
		}
	}
}

// A rank that closes its connection fails the step on every other rank at
// once, well before the timeout; so does rank 0.
func TestLostRankFailsTheStep(t *testing.T) {
	const timeout = 20 * time.Second
	for _, gone := range []int{0, 2} {
		gs := group(t, 3, timeout, nil)
		parts := randomParts(rand.New(rand.NewPCG(3, 4)), 3, 10)
		start := time.Now()
		gs[gone].Close()
		var wg sync.WaitGroup
		for r, g := range gs {
			if r == gone {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := g.Step(0, []Part{parts[r]}, 3)
				if !errors.Is(err, ErrPeerLost) {
					t.Errorf("rank %d gone, rank %d's step: %v, want a lost peer", gone, r, err)
				}
			}()
		}
		wg.Wait()
		if d := time.Since(start); d > timeout/2 {
			t.Errorf("rank %d gone: the others noticed after %v", gone, d)
		}
	}
}

// A rank that never sends its part fails the step after the timeout, naming
// it.
func TestSilentRankTimesOut(t *testing.T) {
	gs := group(t, 3, 500*time.Millisecond, nil)
	parts := randomParts(rand.New(rand.NewPCG(5, 6)), 3, 10)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := gs[r].Step(0, []Part{parts[r]}, 3)
			if !errors.Is(err, ErrPeerLost) || (r == 0 && !strings.Contains(err.Error(), "rank [2]")) {
				t.Errorf("rank %d: %v, want a lost peer naming rank 2", r, err)
			}
		}()
	}
	wg.Wait()
}

func TestJoinRefusesMismatches(t *testing.T) {
	addr := freeAddr(t)
	done := make(chan error, 1)
	go func() {
		g, err := Join(Config{Rank: 0, Size: 2, Addr: addr, Run: "a", Timeout: 2 * time.Second}, nil)
		if err == nil {
			g.Close()
		}
		done <- err
	}()
	_, err := Join(Config{Rank: 1, Size: 2, Addr: addr, Run: "b", Timeout: 2 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Errorf("a rank with other settings joined: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrPeerLost) {
		t.Errorf("rank 0 without its group: %v", err)
	}
	for _, c := range []Config{
		{Rank: 2, Size: 2, Addr: addr, Timeout: time.Second},
		{Rank: 0, Size: 0, Timeout: time.Second},
		{Rank: 1, Size: 2, Timeout: time.Second},
		{Rank: 0, Size: 1},
	} {
		if _, err := Join(c, nil); err == nil {
			t.Errorf("%+v joined", c)
		}
	}
}
