package clitest

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// limitsExec is the test binary run by hyperatLimited: it sets the limits
// and executes the command named by its arguments in its own place.
func limitsExec() int {
	size, err := strconv.ParseInt(os.Getenv(limitsEnv), 10, 64)
	if err != nil || len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "limits: bad request %q %q\n", os.Getenv(limitsEnv), os.Args)
		return exitNoLimits
	}
	if size > 0 {
		lim := syscall.Rlimit{Cur: uint64(size), Max: uint64(size)}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			fmt.Fprintf(os.Stderr, "limits: cannot limit file sizes: %v\n", err)
			return exitNoLimits
		}
	}
	if os.Geteuid() == 0 {
		const capDACOverride, capDACReadSearch = 1, 2
		for _, c := range []uintptr{capDACOverride, capDACReadSearch} {
			if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_CAPBSET_DROP, c, 0); e != 0 {
				fmt.Fprintf(os.Stderr, "limits: this root process cannot give up its permission override (capability %d: %v)\n", c, e)
				return exitNoLimits
			}
		}
	}
	err = syscall.Exec(os.Args[1], os.Args[1:], withoutEnv(os.Environ(), limitsEnv))
	fmt.Fprintf(os.Stderr, "limits: %s: %v\n", os.Args[1], err)
	return exitNoLimits
}
