// hyperat-import reads an ONNX Vision Transformer, reports what it
// recognized in it (the transformer blocks and the linear layers that tuning
// adapts), and makes the workspace the other hyperat commands work in.
//
//	hyperat-import MODEL.onnx [--workspace DIR] [--force]
//	hyperat-import --ops

package app

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/model"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/workspace"
)

const importUsage = `usage: hyperat-import MODEL.onnx [--workspace DIR] [--force]
       hyperat-import --ops

Reads an ONNX Vision Transformer exported by PyTorch, prints its producer,
opset, input, parameter count, and the transformer blocks and linear layers it
recognized (the layers tuning adapts), checks that it is an image classifier
(one float32 input [N, C, H, W], logits [N, classes] first, finite weights and
logits), and writes the workspace: workspace.json and a copy of the model
(model.onnx, with its external data files).

flags:
  --workspace DIR   workspace folder (default .hyperat)
  --force           replace a workspace made from another model
  --ops             print the supported ONNX operators and exit
  -h, --help        print this help

examples:
  hyperat-import vit.onnx
  hyperat-import vit-cifar10.onnx --workspace runs/cifar
  hyperat-import --ops

exit status: 0 done, 1 an error (one line on stderr), 2 a mistake in the
command line.
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

	// the file's SHA-256 (which names the model in the workspace) is
	// computed beside the import, reading the file a second time
	type fileSum struct {
		sum  string
		size int64
		err  error
	}
	summed := make(chan fileSum, 1)
	go func() {
		var s fileSum
		s.sum, s.size, s.err = workspace.SumFile(path)
		summed <- s
	}()
	m, err := onnximport.Load(path)
	if err != nil {
		return err
	}
	rep, err := layers.Recognize(m.Graph)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := rep.Tunable(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// The model must be a classifier that compiles and runs before a
	// workspace is made for it.
	if err := checkClassifier(path, m, rep); err != nil {
		return err
	}
	sum := <-summed
	if sum.err != nil {
		return sum.err
	}
	ws, err := workspace.New(path, sum.sum, sum.size, m, rep)
	if err != nil {
		return err
	}
	if err := workspace.Check(*dir, ws, *force); err != nil {
		return err
	}
	printReport(c.Stdout, path, m, rep)
	if err := workspace.Write(*dir, ws, path, *force); err != nil {
		return err
	}
	files := []string{workspace.ManifestFile, workspace.ModelFile}
	files = append(files, ws.ExternalData...)
	fmt.Fprintf(c.Stdout, "\nworkspace   %s (%s)\n", *dir, strings.Join(files, ", "))
	return nil
}

// checkClassifier checks that m is an image classifier hyperat can tune:
// what model.Inspect checks (one float32 input [N, C, H, W] with C, H and W
// fixed, a first output of float32 logits [N, classes]); tuned layers stored
// as float32; no NaN in any weight and no NaN or infinity in the recognized
// linear layers; finite logits for a mid-grey image.
func checkClassifier(path string, m *onnximport.Model, rep *layers.Report) error {
	c, err := model.New(m)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := checkWeights(m, rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	x := graph.NewTensor(graph.Float32, append([]int{max(c.FixedBatch(), 1)}, c.InputShape()...))
	for i := range x.F {
		x.F[i] = 0.5
	}
	logits, err := c.Logits(x)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, v := range logits.F {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%s: the logits of a mid-grey image are NaN or infinite; hyperat needs a model that computes finite logits", path)
		}
	}
	return nil
}

// checkWeights refuses tuned layers stored in another type than float32
// (hyperat-export writes them back in their own storage, which it can do
// for float32 only), NaN in any initializer, and infinities in the
// recognized linear layers.
func checkWeights(m *onnximport.Model, rep *layers.Report) error {
	linear := map[*graph.Value]bool{}
	for _, l := range rep.Linears {
		linear[l.Weight] = true
		if l.Bias != nil {
			linear[l.Bias] = true
		}
	}
	for _, l := range rep.Targets() {
		for _, v := range []*graph.Value{l.Weight, l.Bias} {
			if tp := m.Init[v]; v != nil && tp != nil && onnx.TensorProto_DataType(tp.GetDataType()) != onnx.TensorProto_FLOAT {
				return fmt.Errorf("initializer %q of layer %s is stored as %s; hyperat tunes and exports float32 weights only: export the model in float32 (model.float() before torch.onnx.export)",
					tp.GetName(), l.Name, onnx.TensorProto_DataType(tp.GetDataType()))
			}
		}
	}
	for _, p := range m.Graph.Params {
		if p.Const == nil || p.Const.DType != graph.Float32 {
			continue
		}
		lin := linear[p]
		for _, v := range p.Const.F {
			if f := float64(v); math.IsNaN(f) || (lin && math.IsInf(f, 0)) {
				return fmt.Errorf("initializer %q holds NaN or infinite values; hyperat needs finite weights", p.Name)
			}
		}
	}
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

func printReport(w io.Writer, path string, m *onnximport.Model, r *layers.Report) {
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
	if r.Head == nil {
		fmt.Fprintln(w, "no classifier head recognized (a linear layer after the last block whose output reaches the logits): tune with --no-head")
	}
	if printUntuned(w, m.Graph, r) {
		structural = true
	}
	if structural {
		fmt.Fprintln(w, "* named from the graph's structure: the file keeps no name for it")
	}
	if shared {
		fmt.Fprintln(w, "shared: the file stores one initializer for this weight and other nodes (identical values)")
	}
}

// printUntuned lists, in graph order, the layers tuning leaves alone: the
// linear layers outside the blocks and the head (a patch merging, a
// pre-logits layer) and the convolutions (patch embeddings, stems, MBConv). It reports whether a
// name was made from the structure.
func printUntuned(w io.Writer, g *graph.Graph, r *layers.Report) (structural bool) {
	type row struct {
		at    int
		cells string
	}
	at := map[*graph.Node]int{}
	for i, n := range g.Nodes {
		at[n] = i
	}
	var rows []row
	mark := func(name string, s bool) string {
		if s {
			structural = true
			return name + " *"
		}
		return name
	}
	for _, l := range r.Linears {
		if l.Kind == layers.KindLinear {
			rows = append(rows, row{at[l.Node], fmt.Sprintf("  %s\tlinear\t%d\t%d\t-\t-\t-\n", mark(l.Name, l.Structural), l.In, l.Out)})
		}
	}
	for _, c := range r.Convs {
		rows = append(rows, row{at[c.Node], fmt.Sprintf("  %s\tconv\t%d\t%d\t%s\t%s\t%d\n", mark(c.Name, c.Structural), c.In, c.Out, dims(c.Kernel), dims(c.Strides), c.Group)})
	}
	if len(rows) == 0 {
		return false
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.at - b.at })
	fmt.Fprintf(w, "\nother layers, not adapted (%d):\n", len(rows))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  layer\tkind\tin\tout\tkernel\tstride\tgroups\n")
	for _, rw := range rows {
		fmt.Fprint(tw, rw.cells)
	}
	tw.Flush()
	return structural
}

// dims formats [3 3] as 3x3.
func dims(d []int) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, "x")
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
