// hyperat-export writes the robust model that hyperat-tune made in a
// workspace as an ONNX file: the original model with the tuned weights merged
// into its initializers, checked by running the written file again before it
// is moved into place. Optionally it writes the LoRA adapters for PEFT, or
// the model with the LoRA branches as nodes.
//
//	hyperat-export OUT.onnx [--workspace DIR] [--adapters DIR] [--unmerged] [--defense NAME] [--force]

package app

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/hyperat/hyperat/export"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/workspace"
)

const exportUsage = `usage: hyperat-export OUT.onnx [--workspace DIR] [--adapters DIR] [--unmerged] [--defense NAME] [--force]

Writes the robust model that hyperat-tune left in the workspace as OUT.onnx:
the original model with the merged LoRA deltas and the trained head written
into its initializers, every other part of the file (nodes, names, the
dynamic batch, opset, metadata) as it was. Initializers keep their storage;
those held as external data, tuned or not, go to one file, OUT.onnx.data
(a model beyond 2 GB is written as a small OUT.onnx and its data), and the
data files of other external tensors are copied beside OUT.onnx. Before it
is moved into place, the written file is imported again and its logits are
compared with the tuned model's (batch 1 and 3, random pixels, tolerance
1e-4). The input model and the workspace's files are never overwritten, and
a failed check leaves no file behind.

flags:
  --workspace DIR   workspace folder (default .hyperat)
  --adapters DIR    also write each defense's LoRA for PEFT (PyTorch):
                    DIR/<defense>/adapter_model.safetensors and
                    adapter_config.json, and the trained head as
                    DIR/head.safetensors
  --unmerged        write the LoRAs as nodes after their MatMul or Gemm
                    instead of merging them; without --defense, every
                    defense's LoRA weighted by the merge weights, so the
                    logits equal the merged model's
  --defense NAME    with --unmerged: only this defense's LoRA
  --force           export a tuning result that collapsed (validation clean
                    accuracy near chance), refused otherwise
  -h, --help        print this help

examples:
  hyperat-export robust.onnx
  hyperat-export robust.onnx --workspace runs/cifar --adapters adapters
  hyperat-export robust-lora.onnx --unmerged --defense trades

exit status: 0 done, 1 an error (one line on stderr), 2 a mistake in the
command line.
`

// ExportCommand is the hyperat-export command line.
func ExportCommand() *cli.Command { return cli.New("hyperat-export", exportUsage) }

// Export runs hyperat-export with args (without the program name).
func Export(c *cli.Command, args []string) error {
	dir := c.Flags.String("workspace", workspace.DefaultDir, "")
	adapters := c.Flags.String("adapters", "", "")
	unmerged := c.Flags.Bool("unmerged", false, "")
	defense := c.Flags.String("defense", "", "")
	force := c.Flags.Bool("force", false, "")
	pos, err := c.Parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return cli.Usagef("no output file given")
	case len(pos) > 1:
		return cli.Usagef("one output file, got %d: %s", len(pos), strings.Join(pos, " "))
	case pos[0] == "":
		return cli.Usagef("the output file name is empty")
	case *dir == "":
		return cli.Usagef("--workspace is empty")
	case c.Flags.Changed("adapters") && *adapters == "":
		return cli.Usagef("--adapters is empty")
	case c.Flags.Changed("defense") && !*unmerged:
		return cli.Usagef("--defense chooses the LoRA of an --unmerged export")
	case c.Flags.Changed("defense") && *defense == "":
		return cli.Usagef("--defense is empty")
	}
	s, err := exportWorkspace(exportRequest{Workspace: *dir, Out: pos[0], Adapters: *adapters,
		Unmerged: *unmerged, Defense: *defense, Force: *force})
	if err != nil {
		return err
	}
	printSummary(c.Stdout, s)
	return nil
}

func printSummary(w io.Writer, s *exportSummary) {
	r := s.Model
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "wrote\t%s (%s)\n", r.Path, size(r.Size))
	for _, f := range r.Files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(tw, "\t%s (%s)\n", f, size(st.Size()))
		}
	}
	fmt.Fprintf(tw, "tuning\t%s with %s\n", s.Method, strings.Join(s.Defenses, ", "))
	fmt.Fprintf(tw, "model\t%s\n", s.Mode)
	fmt.Fprintf(tw, "initializers\t%d replaced", r.Replaced)
	if r.AddedInits > 0 {
		fmt.Fprintf(tw, ", %d added with %d nodes", r.AddedInits, r.AddedNodes)
	}
	fmt.Fprintln(tw)
	var bs []string
	for _, b := range r.Batches {
		bs = append(bs, fmt.Sprint(b))
	}
	fmt.Fprintf(tw, "check\tmax |logit difference| %.3g against %s (batch %s, tolerance %g)\n",
		r.MaxDiff, s.Reference, strings.Join(bs, " and "), export.Tolerance)
	if len(s.Adapters) > 0 {
		var dirs []string
		seen := map[string]bool{}
		for _, f := range s.Adapters {
			if filepath.Base(f) == headFile {
				dirs = append(dirs, f)
				continue
			}
			if d := filepath.Dir(f); !seen[d] {
				seen[d] = true
				dirs = append(dirs, d+string(filepath.Separator))
			}
		}
		fmt.Fprintf(tw, "adapters\t%s\n", strings.Join(dirs, ", "))
	}
	tw.Flush()
}

// size formats a byte count: 1.2 MB.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
