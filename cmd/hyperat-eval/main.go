// Command hyperat-eval: see hyperat-eval --help (internal/app/eval.go).
package main

import (
	"os"

	"github.com/hyperat/hyperat/internal/app"
)

func main() {
	c := app.EvalCommand()
	os.Exit(c.Run(func() error { return app.Eval(c, os.Args[1:]) }))
}
