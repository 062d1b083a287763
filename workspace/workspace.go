// Package workspace owns the hyperat workspace: the folder (by default
// .hyperat/) that hyperat-import makes from a model and the later commands
// (tune, export, eval) work in. It is the one place that knows the folder's
// files, their names and their formats:
//
//	workspace.json                 Workspace: the source model and the layers
//	                               recognized in it (written last, so its
//	                               presence means the model's copy is complete)
//	model.onnx                     the copy of the model, its external data
//	                               files beside it
//	state.json                     State: the latest checkpoint of a tuning run
//	checkpoint-NNNNNN.safetensors  that checkpoint's tensors (hyperat.Snapshot)
//	metrics.jsonl                  the run's records, one hyperat.Record a line
//	loss.png, accuracy.png         the plots of the metrics (internal/plots
//	                               draws them)
//	tuned/                         the finished tuning (hyperat.Tuned) that
//	                               hyperat-export reads:
//	  weights.safetensors          the new weights keyed by layers.WeightKey's
//	                               text form ("initializer" or
//	                               "initializer@output")
//	  adapters.safetensors         each defense's LoRA factors
//	                               ("<defense>/<layer>.lora_A.weight" [r, in],
//	                               ".lora_B.weight" [out, r])
//	  result.json                  the hyperat.Result, with its format version
//
// The packages that compute these (hyperat, layers) hold the data; this one
// writes and reads the files. Every file is written atomically (fsx), safetensors
// files carry a checksum checked on read, metrics.jsonl is appended to and
// its torn last line (a killed process) is skipped when it is read.
package workspace

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/onnx"
)

const (
	// FormatVersion is the version of workspace.json this package writes; it
	// reads this version and older ones.
	FormatVersion = 1
	// DefaultDir is the workspace folder when none is given.
	DefaultDir = ".hyperat"
	// ManifestFile and ModelFile are the names of the files inside a workspace.
	ManifestFile = "workspace.json"
	ModelFile    = "model.onnx"
)

// Workspace is the content of workspace.json.
type Workspace struct {
	Format   int    `json:"format"`
	Source   Source `json:"source"`
	Producer string `json:"producer"`
	Opset    int64  `json:"opset"`
	Input    Input  `json:"input"`
	// Params counts the elements of the model's float initializers.
	Params int     `json:"params"`
	Blocks []Block `json:"blocks"`
	// Layers are the recognized linear layers in graph order: the blocks'
	// layers and the head are the tuning targets.
	Layers []Layer `json:"layers"`
	// ExternalData lists the model's external data files, copied beside model.onnx.
	ExternalData []string `json:"external_data,omitempty"`
}

// Source identifies the model the workspace was made from.
type Source struct {
	Path   string `json:"path"`     // as given on the command line
	Abs    string `json:"abs_path"` // absolute
	SHA256 string `json:"sha256"`   // of the model file's bytes
	Size   int64  `json:"size"`
}

// Input is the model's input.
type Input struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []Dim  `json:"shape"`
}

// Dim is one dimension: a size, or a symbolic one (written as its name, "?" if it has none).
type Dim struct {
	N   int
	Sym string
}

// MarshalJSON writes a size as a number and a symbolic dim as a string.
func (d Dim) MarshalJSON() ([]byte, error) {
	if d.N >= 0 {
		return []byte(strconv.Itoa(d.N)), nil
	}
	s := d.Sym
	if s == "" {
		s = "?"
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Dim) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*d = Dim{N: -1, Sym: s}
		if s == "?" {
			d.Sym = ""
		}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil || n < 0 {
		return fmt.Errorf("dimension %s is neither a size nor a name", b)
	}
	*d = Dim{N: n}
	return nil
}

// GraphShape converts the dims to the IR's shape.
func (in Input) GraphShape() graph.Shape {
	s := make(graph.Shape, len(in.Shape))
	for i, d := range in.Shape {
		s[i] = graph.Dim{N: d.N, Sym: d.Sym}
	}
	return s
}

// Block is one transformer block.
type Block struct {
	Index      int    `json:"index"`
	Name       string `json:"name"`
	Structural bool   `json:"structural,omitempty"`
}

// Layer is one recognized linear layer.
type Layer struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Block is the block's index, -1 outside blocks (the head).
	Block int `json:"block"`
	In    int `json:"in"`
	Out   int `json:"out"`
	// Weight and Bias are initializer names in the model; Node the MatMul or Gemm.
	Weight string `json:"weight"`
	Bias   string `json:"bias,omitempty"`
	Node   string `json:"node"`
	// Transposed: the weight is stored [out,in] (Gemm transB=1), else [in,out].
	Transposed bool `json:"transposed,omitempty"`
	// SharedWeight: the weight initializer is read by other nodes too.
	SharedWeight bool `json:"shared_weight,omitempty"`
	// Structural: the name was made from the structure, the file names none.
	Structural bool `json:"structural,omitempty"`
}

// Sum is the hex SHA-256 of data.
func Sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// SumFile is the hex SHA-256 of a file's bytes (what Sum gives for them,
// read as a stream) and its size.
func SumFile(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %v", path, fsx.Bare(err))
	}
	defer f.Close()
	h := sha256.New()
	if size, err = io.Copy(h, f); err != nil {
		return "", 0, fmt.Errorf("%s: %v", path, fsx.Bare(err))
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// New describes a model and what was recognized in it. path is the model's
// path as given; sum and size its file's SHA-256 (SumFile) and size.
func New(path, sum string, size int64, m *onnximport.Model, r *layers.Report) (*Workspace, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	ws := &Workspace{
		Format:   FormatVersion,
		Source:   Source{Path: path, Abs: abs, SHA256: sum, Size: size},
		Producer: m.Producer,
		Opset:    m.Opset,
		Params:   r.Params,
		Blocks:   []Block{},
		Layers:   []Layer{},
	}
	if in := r.Input; in != nil {
		ws.Input = Input{Name: in.Name, DType: in.DType.String(), Shape: []Dim{}}
		for _, d := range in.Shape {
			ws.Input.Shape = append(ws.Input.Shape, Dim{N: d.N, Sym: d.Sym})
		}
	}
	for _, b := range r.Blocks {
		ws.Blocks = append(ws.Blocks, Block{Index: b.Index, Name: b.Name, Structural: b.Structural})
	}
	for _, l := range r.Linears {
		ly := Layer{Name: l.Name, Kind: l.Kind, Block: l.Block, In: l.In, Out: l.Out,
			Weight: l.Weight.Name, Node: l.Node.Name, Transposed: l.Transposed, SharedWeight: l.SharedWeight,
			Structural: l.Structural}
		if l.Bias != nil && l.Bias.Param {
			ly.Bias = l.Bias.Name
		}
		ws.Layers = append(ws.Layers, ly)
	}
	if m.Proto != nil {
		ws.ExternalData = externalFiles(m.Proto)
	}
	return ws, nil
}

// externalFiles lists the distinct external data locations of a model's
// initializers and constant tensors, in file order.
func externalFiles(m *onnx.ModelProto) []string {
	var out []string
	seen := map[string]bool{}
	add := func(tp *onnx.TensorProto) {
		if tp.GetDataLocation() != onnx.TensorProto_EXTERNAL {
			return
		}
		if loc := onnximport.ExternalLocation(tp); loc != "" && !seen[loc] {
			seen[loc] = true
			out = append(out, loc)
		}
	}
	for _, tp := range m.GetGraph().GetInitializer() {
		add(tp)
	}
	for _, n := range m.GetGraph().GetNode() {
		for _, a := range n.GetAttribute() {
			if a.GetT() != nil {
				add(a.GetT())
			}
		}
	}
	return out
}

// Read reads dir's workspace.json.
func Read(dir string) (*Workspace, error) {
	path := filepath.Join(dir, ManifestFile)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a hyperat workspace (no %s); make one with hyperat-import", dir, ManifestFile)
		}
		return nil, fmt.Errorf("%s: %v", path, fsx.Bare(err))
	}
	var ws Workspace
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&ws); err != nil {
		return nil, fmt.Errorf("%s: not a valid workspace file (%v)", path, err)
	}
	switch {
	case ws.Format <= 0:
		return nil, fmt.Errorf("%s: not a valid workspace file (no format version)", path)
	case ws.Format > FormatVersion:
		return nil, fmt.Errorf("%s: format version %d is newer than this hyperat reads (%d)", path, ws.Format, FormatVersion)
	case ws.Source.SHA256 == "":
		return nil, fmt.Errorf("%s: not a valid workspace file (no source model)", path)
	}
	return &ws, nil
}

// ModelPath is the copy of the model inside the workspace dir.
func ModelPath(dir string) string { return filepath.Join(dir, ModelFile) }

// Write makes or updates the workspace in dir: the copy of the model file
// src (and of the external data files named in ws, found beside it), then
// workspace.json. The files are copied as streams, never read into memory.
// It refuses, unless force is set, to replace a workspace made from another
// model, or to write into a folder that holds other things and no workspace.
func Write(dir string, ws *Workspace, src string, force bool) error {
	if err := Check(dir, ws, force); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("workspace %s: %v", dir, fsx.Bare(err))
	}
	if err := checkExternal(ws); err != nil {
		return err
	}
	for _, loc := range ws.ExternalData {
		rel := filepath.Clean(filepath.FromSlash(loc))
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("%s: %v", filepath.Dir(dst), fsx.Bare(err))
		}
		if err := fsx.CopyFile(filepath.Join(filepath.Dir(src), rel), dst); err != nil {
			return fmt.Errorf("external data file %q: %v", loc, err)
		}
	}
	if err := fsx.CopyFile(src, ModelPath(dir)); err != nil {
		return err
	}
	js, err := json.MarshalIndent(ws, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFile(filepath.Join(dir, ManifestFile), append(js, '\n'))
}

// LoadModel imports the workspace's copy of the model (onnximport.Load),
// checking that it is the one hyperat-import recorded in workspace.json.
func LoadModel(dir string, ws *Workspace) (*onnximport.Model, error) {
	path := ModelPath(dir)
	sum, _, err := SumFile(path)
	if err != nil {
		return nil, err
	}
	if sum != ws.Source.SHA256 {
		return nil, fmt.Errorf("%s changed after hyperat-import made the workspace; import the model again", path)
	}
	return onnximport.Load(path)
}

// checkExternal refuses external data locations that would leave the
// workspace or overwrite its own files.
func checkExternal(ws *Workspace) error {
	for _, loc := range ws.ExternalData {
		rel := filepath.Clean(filepath.FromSlash(loc))
		if rel == ManifestFile || rel == ModelFile || !filepath.IsLocal(rel) {
			return fmt.Errorf("external data file %q cannot be copied into the workspace", loc)
		}
	}
	return nil
}

// Check reports whether ws may be written to dir: a new or empty folder, or the
// workspace of the same model; anything else only with force.
func Check(dir string, ws *Workspace, force bool) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("workspace %s: %v", dir, fsx.Bare(err))
	case !st.IsDir():
		return fmt.Errorf("workspace %s exists and is not a folder", dir)
	case force:
		return nil
	}
	old, err := Read(dir)
	if err == nil {
		if old.Source.SHA256 != ws.Source.SHA256 {
			return fmt.Errorf("workspace %s was made from another model (%s, sha256 %.12s); use --force to replace it, or choose another --workspace",
				dir, old.Source.Path, old.Source.SHA256)
		}
		return nil
	}
	if _, serr := os.Stat(filepath.Join(dir, ManifestFile)); serr == nil {
		return fmt.Errorf("%v; use --force to replace it", err)
	}
	entries, rerr := os.ReadDir(dir)
	if rerr != nil {
		return fmt.Errorf("workspace %s: %v", dir, fsx.Bare(rerr))
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is a folder that is not a hyperat workspace and not empty; use --force to write into it, or choose another --workspace", dir)
	}
	return nil
}
