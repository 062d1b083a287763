// Package cli holds what every hyperat command shares: flag parsing with
// pflag, and the rule that a failure prints one line on stderr and exits with
// status 1 (2 for a mistake in the command line), never a stack trace.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Exit statuses.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// UsageError is a mistake in the command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// errHelp reports that --help was asked for and the usage printed.
var errHelp = errors.New("help")

// Command is one CLI: its name, its usage text (printed by --help), and its flags.
type Command struct {
	Name  string
	Usage string // the full help text, ending in a newline
	Flags *pflag.FlagSet
	// Stdout and Stderr default to the process's.
	Stdout, Stderr io.Writer
}

// New makes a command whose flags report errors instead of printing them.
func New(name, usage string) *Command {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return &Command{Name: name, Usage: usage, Flags: fs, Stdout: os.Stdout, Stderr: os.Stderr}
}

// Parse parses args and returns the positional arguments.
func (c *Command) Parse(args []string) ([]string, error) {
	if err := c.Flags.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(c.Stdout, c.Usage)
			return nil, errHelp
		}
		return nil, &UsageError{Msg: err.Error()}
	}
	return c.Flags.Args(), nil
}

// Run calls fn and turns its outcome into an exit status, printing an error as
// one line "name: message" on stderr. A panic is caught as a last resort and
// printed the same way.
func (c *Command) Run(fn func() error) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(c.Stderr, "%s: internal error: %s\n", c.Name, OneLine(fmt.Sprint(r)))
			code = ExitError
		}
	}()
	err := fn()
	var ue *UsageError
	switch {
	case err == nil || errors.Is(err, errHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.Stderr, "%s: %s (see %s --help)\n", c.Name, OneLine(ue.Msg), c.Name)
		return ExitUsage
	}
	fmt.Fprintf(c.Stderr, "%s: %s\n", c.Name, OneLine(err.Error()))
	return ExitError
}

// OneLine joins the lines of a message.
func OneLine(s string) string {
	return strings.TrimSpace(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s))
}

// Changed lists the names of the flags set on the command line, in the
// order they were defined.
func (c *Command) Changed() []string {
	var names []string
	c.Flags.Visit(func(f *pflag.Flag) { names = append(names, f.Name) })
	return names
}
