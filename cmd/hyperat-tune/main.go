// Command hyperat-tune: see hyperat-tune --help (internal/app/tune.go).
package main

import (
	"os"

	"github.com/hyperat/hyperat/internal/app"
)

func main() {
	c := app.TuneCommand()
	os.Exit(c.Run(func() error { return app.Tune(c, os.Args[1:]) }))
}
