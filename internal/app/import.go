// hyperat-import reads an ONNX Vision Transformer, reports what it
// recognized in it (the transformer blocks and the linear layers that tuning
// adapts), and makes the workspace the other hyperat commands work in.
//
//	hyperat-import MODEL.onnx [--workspace DIR] [--force]
//	hyperat-import --ops

package app

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/hyperat/hyperat/compile"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/workspace"
)

const importUsage = `usage: hyperat-import MODEL.onnx [--workspace DIR] [--force]
       hyperat-import --ops

Reads an ONNX Vision Transformer exported by PyTorch, prints its producer,
opset, input, parameter count, and the transformer blocks and linear layers it
recognized (the layers tuning adapts), checks that the model compiles, and
writes the workspace: workspace.json and a copy of the model (model.onnx).

flags:
  --workspace DIR   workspace folder (default .hyperat)
  --force           replace a workspace made from another model
  --ops             print the supported ONNX operators and exit
  -h, --help        print this help
`

// ImportCommand is the hyperat-import command line.
func ImportCommand() *cli.Command { return cli.New("hyperat-import", importUsage) }

// Import runs hyperat-import with args (without the program name).
func Import(c *cli.Command, args []string) error {
	dir := c.Flags.String("workspace", workspace.DefaultDir, "")
	force := c.Flags.Bool("force", false, "")
	ops := c.Flags.Bool("ops", false, "")
	pos, err := c.Parse(args)
	if err != nil {
		return err
	}
	if *ops {
		if len(pos) > 0 {
			return cli.Usagef("--ops takes no model")
		}
		printOps(c.Stdout)
		return nil
	}
	switch {
	case len(pos) == 0:
		return cli.Usagef("no model given")
	case len(pos) > 1:
		return cli.Usagef("one model at a time, got %d: %s", len(pos), strings.Join(pos, " "))
	case *dir == "":
		return cli.Usagef("--workspace is empty")
	}
	path := pos[0]

	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %v", path, bare(err))
	}
	proto, err := onnximport.Decode(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m, err := onnximport.Import(proto, filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m.Path = path
	rep, err := onnximport.Recognize(m)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(rep.Blocks) == 0 {
		return fmt.Errorf("%s: no transformer block recognized (no Softmax between two activation MatMuls); hyperat tunes Vision Transformers", path)
	}
	if len(m.Graph.Inputs) != 1 {
		return fmt.Errorf("%s: the model has %d inputs; hyperat needs one (the images)", path, len(m.Graph.Inputs))
	}
	// The forward must compile before a workspace is made for it.
	if _, err := compile.Compile(m.Graph, compile.Options{Batch: 1}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ws, err := workspace.New(path, data, m, rep)
	if err != nil {
		return err
	}
	if err := workspace.Check(*dir, ws, *force); err != nil {
		return err
	}
	printReport(c.Stdout, path, m, rep)
	if err := workspace.Write(*dir, ws, data, filepath.Dir(path), *force); err != nil {
		return err
	}
	files := []string{workspace.ManifestFile, workspace.ModelFile}
	files = append(files, ws.ExternalData...)
	fmt.Fprintf(c.Stdout, "\nworkspace   %s (%s)\n", *dir, strings.Join(files, ", "))
	return nil
}

func printOps(w io.Writer) {
	ops := onnximport.SupportedOps()
	fmt.Fprintf(w, "%d supported ONNX operators (default domain, opsets %d to %d):\n",
		len(ops), onnximport.MinOpset, onnximport.MaxOpset)
	for _, op := range ops {
		fmt.Fprintln(w, op)
	}
}

func printReport(w io.Writer, path string, m *onnximport.Model, r *onnximport.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", path)
	fmt.Fprintf(tw, "producer\t%s\n", orNone(m.Producer))
	fmt.Fprintf(tw, "opset\t%d\n", m.Opset)
	if in := r.Input; in != nil {
		note := ""
		if len(in.Shape) > 0 && in.Shape[0].N < 0 {
			note = " (symbolic batch)"
		} else if len(in.Shape) > 0 {
			note = fmt.Sprintf(" (fixed batch %d)", in.Shape[0].N)
		}
		fmt.Fprintf(tw, "input\t%s %s %s%s\n", in.Name, in.DType, in.Shape, note)
	}
	fmt.Fprintf(tw, "parameters\t%s\n", thousands(r.Params))
	structural, shared := false, false
	for i, b := range r.Blocks {
		name := b.Name
		if b.Structural {
			name += " *"
			structural = true
		}
		head := ""
		if i == 0 {
			head = fmt.Sprintf("blocks (%d)", len(r.Blocks))
		}
		fmt.Fprintf(tw, "%s\t%d  %s\n", head, b.Index, name)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nlinear layers to tune (%d):\n", len(r.Targets()))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  block\tlayer\tkind\tin\tout\tweight\n")
	var other []*onnximport.Linear
	for _, l := range r.Targets() {
		block := "-"
		if l.Block >= 0 {
			block = fmt.Sprint(l.Block)
		}
		name := l.Name
		if l.Structural {
			name += " *"
			structural = true
		}
		layout := "[in,out]"
		if l.Transposed {
			layout = "[out,in]"
		}
		if l.SharedWeight {
			layout += " shared"
			shared = true
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%s\n", block, name, l.Kind, l.In, l.Out, layout)
	}
	tw.Flush()
	for _, l := range r.Linears {
		if l.Kind == onnximport.KindLinear {
			other = append(other, l)
		}
	}
	if len(other) > 0 {
		fmt.Fprintf(w, "other linear layers (not tuned):\n")
		for _, l := range other {
			fmt.Fprintf(w, "  %s  %d -> %d\n", l.Name, l.In, l.Out)
		}
	}
	if structural {
		fmt.Fprintln(w, "* named from the graph's structure: the file keeps no name for it")
	}
	if shared {
		fmt.Fprintln(w, "shared: the file stores one initializer for this weight and other nodes (identical values)")
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// thousands formats 1234567 as 1,234,567.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// bare drops the path from an os error: the message names the file itself.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
