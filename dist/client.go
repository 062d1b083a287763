package dist

import (
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"strings"
	"time"
)

// client is the side of a rank other than 0: one connection to the hub.
type client struct {
	cfg Config
	c   *rpc.Client
}

// dial connects to rank 0 and joins, retrying while rank 0 is not listening
// yet (the processes of a Job start in any order) and while the rank 0 it
// reaches is that of a group that broke (a restarted rank can reach the
// previous rank 0 before it exits).
func dial(cfg Config) (*client, []byte, error) {
	deadline := time.Now().Add(cfg.Timeout)
	for {
		cl, hello, err := dialOnce(cfg, deadline)
		if err == nil || !errors.Is(err, ErrPeerLost) {
			return cl, hello, err
		}
		if time.Now().Add(200 * time.Millisecond).After(deadline) {
			return nil, nil, fmt.Errorf("%w: rank %d could not join rank 0 at %s within %v: %v", ErrPeerLost, cfg.Rank, cfg.Addr, cfg.Timeout, unwrapLost(err))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dialOnce tries once; an error wrapping ErrPeerLost is worth another try.
func dialOnce(cfg Config, deadline time.Time) (*client, []byte, error) {
	conn, err := net.DialTimeout("tcp", cfg.Addr, time.Until(deadline))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrPeerLost, err)
	}
	cl := &client{cfg: cfg, c: rpc.NewClient(conn)}
	var r JoinReply
	if err := cl.call("Hub.Join", JoinArgs{Rank: cfg.Rank, Size: cfg.Size, Run: cfg.Run}, &r, time.Until(deadline)); err != nil {
		cl.c.Close()
		return nil, nil, err
	}
	return cl, r.Hello, nil
}

// unwrapLost is err's message without ErrPeerLost's.
func unwrapLost(err error) string {
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), ErrPeerLost.Error()), ": ")
}

func (cl *client) step(step int64, parts []Part, total int) (Sum, error) {
	var r WireSum
	// the hub waits up to the timeout after its own contribution, which may
	// come after this one: wait twice as long before giving up on it
	err := cl.call("Hub.Step", StepArgs{Rank: cl.cfg.Rank, Step: step, Total: total, Parts: toWire(parts)}, &r, 2*cl.cfg.Timeout)
	if err != nil {
		return Sum{}, err
	}
	d, err := fromWire([]wirePart{{Data: r.Data}})
	if err != nil {
		return Sum{}, err
	}
	return Sum{Data: d[0].Data, Stats: r.Stats}, nil
}

// call makes one call and waits at most wait; a lost connection or a hub
// that reported a lost rank give an error wrapping ErrPeerLost.
func (cl *client) call(method string, args, reply any, wait time.Duration) error {
	call := cl.c.Go(method, args, reply, make(chan *rpc.Call, 1))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-call.Done:
	case <-t.C:
		return fmt.Errorf("%w: rank 0 did not answer within %v", ErrPeerLost, wait)
	}
	err := call.Error
	var se rpc.ServerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && strings.HasPrefix(string(se), ErrPeerLost.Error()):
		return fmt.Errorf("%w%s", ErrPeerLost, strings.TrimPrefix(string(se), ErrPeerLost.Error()))
	case errors.As(err, &se):
		return errors.New(string(se))
	default: // the connection: rank 0 is gone
		return fmt.Errorf("%w: rank 0 (%v)", ErrPeerLost, err)
	}
}

func (cl *client) close() error { return cl.c.Close() }
