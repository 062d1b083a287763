// Command hyperat-export: see hyperat-export --help (internal/app/export.go).
package main

import (
	"os"

	"github.com/hyperat/hyperat/internal/app"
)

func main() {
	c := app.ExportCommand()
	os.Exit(c.Run(func() error { return app.Export(c, os.Args[1:]) }))
}
