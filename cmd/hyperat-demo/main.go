// Command hyperat-demo runs the whole pipeline on the fixture ViT and the
// MNIST subset that ship with the repository: import, HyperAT tuning,
// export of robust.onnx, and a before/after table of clean and robust
// accuracy. It runs the same code as the four commands.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/internal/app"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/model"
)

const usage = `usage: hyperat-demo [--out robust.onnx] [--iters N] [--eval N] [--workspace DIR]

Runs the whole pipeline on what ships with the repository, from its root folder:
  1. hyperat-import fixtures/models/mnist_vit_op17.onnx
  2. hyperat-tune --data fixtures/mnist --eps 0.05 --lr 1e-4 --attack-precision fp32
     (HyperAT with PGD-AT, TRADES and MART; a short run, at a smaller eps and
     learning rate than the reference setting, which needs hundreds of iterations:
     docs/RESULTS.md; float32 attacks, so that its figures are the same on CPUs
     with and without AVX512_BF16)
  3. hyperat-export robust.onnx
  4. clean and PGD-20 accuracy at eps 0.05 of the model before and after, on the
     first test images of the MNIST subset

flags:
  --out FILE        the robust model (default robust.onnx)
  --iters N         tuning iterations (default 80)
  --eval N          test images in the final table (default 100)
  --workspace DIR   workspace (default: a temporary folder, removed afterwards)
  -h, --help        print this help

examples:
  go run ./cmd/hyperat-demo
  go run ./cmd/hyperat-demo --iters 300 --eval 500 --workspace demo-ws

exit status: 0 done, 1 an error (one line on stderr), 2 a mistake in the
command line.
`

// demoEps is the demo's radius: at the reference 0.1 the fixture model needs
// hundreds of iterations before robustness appears (docs/RESULTS.md).
const demoEps = "0.05"

func main() {
	c := cli.New("hyperat-demo", usage)
	os.Exit(c.Run(func() error { return run(c, os.Args[1:]) }))
}

func run(c *cli.Command, args []string) error {
	out := c.Flags.String("out", "robust.onnx", "")
	iters := c.Flags.Int("iters", 80, "")
	nEval := c.Flags.Int("eval", 100, "")
	wsFlag := c.Flags.String("workspace", "", "")
	if pos, err := c.Parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	src := filepath.Join("fixtures", "models", "mnist_vit_op17.onnx")
	mnist := filepath.Join("fixtures", "mnist")
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("%s not found: run the demo from the repository's root folder", src)
	}
	ws := *wsFlag
	if ws == "" {
		tmp, err := os.MkdirTemp("", "hyperat-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		ws = filepath.Join(tmp, "workspace")
	}
	start := time.Now()
	step := func(title string, cmd *cli.Command, f func(*cli.Command, []string) error, args ...string) error {
		fmt.Fprintf(c.Stdout, "\n== %s\n$ %s %s\n", title, cmd.Name, strings.Join(args, " "))
		cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
		if err := f(cmd, args); err != nil {
			return fmt.Errorf("%s: %v", cmd.Name, err)
		}
		return nil
	}
	if err := step("1. import the pretrained ViT", app.ImportCommand(), app.Import, src, "--workspace", ws, "--force"); err != nil {
		return err
	}
	if err := step("2. HyperAT: tune defensive LoRAs, merge them", app.TuneCommand(), app.Tune,
		"--workspace", ws, "--data", mnist, "--eps", demoEps, "--lr", "1e-4", "--iters", strconv.Itoa(*iters), "--batch", "32",
		"--steps", "5", "--val", "256", "--val-steps", "10", "--eval-every", strconv.Itoa(max(*iters/4, 1)), "--seed", "0", "--force",
		"--attack-precision", "fp32"); err != nil {
		return err
	}
	if err := step("3. export the robust model", app.ExportCommand(), app.Export, *out, "--workspace", ws); err != nil {
		return err
	}

	fmt.Fprintf(c.Stdout, "\n== 4. before and after, on the first %d test images (eps %s)\n", *nEval, demoEps)
	test, err := data.Open(mnist, data.Test)
	if err != nil {
		return err
	}
	idx := test.First(*nEval)
	eps, err := cli.ParseEps(demoEps)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "  %-28s %7s %7s\n", "model", "clean", "PGD-20")
	for _, m := range []struct{ name, path string }{{"pretrained " + filepath.Base(src), src}, {"robust " + filepath.Base(*out), *out}} {
		cl, err := model.Load(m.path)
		if err != nil {
			return err
		}
		sh := cl.InputShape()
		acc, err := hyperat.Evaluate(cl, test.View(sh[0], sh[1], sh[2]), idx, 50, eps, 20, 1)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "  %-28s %6.1f%% %6.1f%%\n", m.name, 100*acc.Clean, 100*acc.Robust)
	}
	fmt.Fprintf(c.Stdout, "\nwrote %s in %s\n", *out, time.Since(start).Round(time.Second))
	return nil
}
