package clitest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Some bad conditions cannot be made by a test for a command it starts
// plainly: a full disk without mounting a small file system (which needs
// root), and, when the tests run as root, a folder the command may not write
// or a file it may not read, since root passes every permission check.
// hyperatLimited runs a command through this test binary instead, which
// lowers its own limits (limitsExec, before any test runs) and then executes
// the command in its place, so the limits hold for the command and nothing
// else:
//
//   - fileSize > 0 sets RLIMIT_FSIZE: a write that would make a file larger
//     than fileSize bytes fails with EFBIG ("file too large"), partway
//     through the file, as a write to a full disk fails with ENOSPC. The
//     command cannot tell the two apart by anything but the message.
//   - as root, the capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH are
//     dropped from the bounding set, so that after the exec the permission
//     bits apply to the command as to any other user: a folder of mode 0555
//     is read-only to it and a file of mode 0 unreadable.
//
// Where the system allows neither (another OS, a root process without
// CAP_SETPCAP), the test is skipped with the reason.

// limitsEnv holds the file size limit for a run through the test binary.
const limitsEnv = "HYPERAT_CLITEST_LIMITS"

// exitNoLimits is the status of a run whose limits could not be set.
const exitNoLimits = 125

// limits are the restrictions of one run.
type limits struct {
	fileSize int64 // bytes; 0: no limit on file sizes
}

// hyperatLimited runs one of the commands in dir under lim.
func hyperatLimited(t *testing.T, dir string, lim limits, name string, args ...string) result {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Skipf("cannot run the test binary again: %v", err)
	}
	cmd := exec.Command(self, append([]string{filepath.Join(bin, name)}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", limitsEnv, lim.fileSize))
	r := runCmd(t, name, cmd)
	if r.code == exitNoLimits && strings.HasPrefix(r.stderr, "limits: ") {
		t.Skip(strings.TrimSpace(r.stderr))
	}
	return r
}

// probeEnv makes the test binary, run through limitsExec, report whether it
// can make a file in the folder named by its argument (exit status 0) or not (1).
const probeEnv = "HYPERAT_CLITEST_PROBE"

// writableUnderLimits reports whether a command run by hyperatLimited could
// make a file in dir.
func writableUnderLimits(t *testing.T, dir string) bool {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Skipf("cannot run the test binary again: %v", err)
	}
	cmd := exec.Command(self, self, dir)
	cmd.Env = append(os.Environ(), limitsEnv+"=0", probeEnv+"=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == exitNoLimits:
		t.Skip(strings.TrimSpace(errb.String()))
	}
	return false
}

// probeWrite is the probe run: 0 when a file can be made in dir.
func probeWrite(dir string) int {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		return 1
	}
	f.Close()
	os.Remove(f.Name())
	return 0
}

// withoutEnv is env less the variable name.
func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
