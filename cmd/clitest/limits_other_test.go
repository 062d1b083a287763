//go:build !linux

package clitest

import (
	"fmt"
	"os"
)

// limitsExec sets no limits outside Linux: the tests that need them skip.
func limitsExec() int {
	fmt.Fprintln(os.Stderr, "limits: file size and permission limits are set on Linux only")
	return exitNoLimits
}
