//go:build !linux

package bench

import "time"

var clockEpoch = time.Now()

// ThreadClock is wall time where the thread's CPU time is not read: the
// core-scaling simulation then needs a quiet machine.
func ThreadClock() int64 { return int64(time.Since(clockEpoch)) }

// ProcessCPU is wall time where the process's CPU time is not read.
func ProcessCPU() time.Duration { return time.Since(clockEpoch) }
