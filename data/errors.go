package data

import (
	"errors"
	"fmt"
)

// Error kinds. Every error this package returns names the file or folder it is
// about and wraps one of these, so a caller can tell them apart with errors.Is.
var (
	// ErrNoDataset: nothing in the folder looks like a dataset this package reads.
	ErrNoDataset = errors.New("no dataset found")
	// ErrSplitMissing: the folder holds a dataset, but not the requested split.
	ErrSplitMissing = errors.New("split missing")
	// ErrFormat: a file is truncated, corrupt, or not what its name says.
	ErrFormat = errors.New("bad dataset file")
	// ErrMismatch: the dataset cannot feed the model (classes, channels, sizes).
	ErrMismatch = errors.New("dataset does not fit the model")
	// ErrArgument: a caller passed an invalid argument (index out of range, bad size).
	ErrArgument = errors.New("invalid argument")
)

// pathError is "PATH: message", wrapping an error kind.
type pathError struct {
	path  string
	msg   string
	kind  error
	cause error // an underlying error (from os, gzip...), or nil
}

func (e *pathError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func (e *pathError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// errorf builds a one-line error about path of the given kind.
func errorf(kind error, path, format string, args ...any) error {
	return &pathError{path: path, msg: fmt.Sprintf(format, args...), kind: kind}
}

// wrapf is errorf keeping cause reachable with errors.Is and errors.As.
func wrapf(kind, cause error, path, format string, args ...any) error {
	return &pathError{path: path, msg: fmt.Sprintf(format, args...), kind: kind, cause: cause}
}
