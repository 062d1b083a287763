// Package clitest holds the end-to-end tests of the hyperat commands: they build
// the binaries with go build and run them on good and bad inputs, checking exit
// statuses, the one-line error rule and that failures leave files untouched.
package clitest
