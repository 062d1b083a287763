//go:build !linux

package bench

import "time"

var clockEpoch = time.Now()

// ThreadClock is wall time where the thread's CPU time is not read: the
// core-scaling simulation then needs a quiet machine.
func ThreadClock() int64 { return int64(time.Since(clockEpoch)) }
