//go:build linux

package bench

import (
	"syscall"
	"time"
	"unsafe"
)

// ThreadClock is the CPU time of the calling thread in nanoseconds
// (CLOCK_THREAD_CPUTIME_ID): unlike wall time, it does not count the time
// other processes hold the core.
func ThreadClock() int64 {
	var ts syscall.Timespec
	const threadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, threadCPUTime, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// ProcessCPU is the user and system CPU time of the whole process so far
// (all its threads).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
