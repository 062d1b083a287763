// Package app holds the hyperat commands (import, tune, export, eval), so that
// the thin mains in cmd/ and the demo run exactly the same code.
package app
