// Command hyperat-import: see hyperat-import --help (internal/app/import.go).
package main

import (
	"os"

	"github.com/hyperat/hyperat/internal/app"
)

func main() {
	c := app.ImportCommand()
	os.Exit(c.Run(func() error { return app.Import(c, os.Args[1:]) }))
}
