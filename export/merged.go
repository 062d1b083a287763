package export

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/model"
	"github.com/hyperat/hyperat/onnx"
)

// Options control a write.
type Options struct {
	// Protect lists files the export must never write besides the source's
	// external data files (always protected): the source model itself, a
	// workspace's copy of it.
	Protect []Protected
	// Reference is the model the written file must reproduce. When nil it
	// is the source model with the new weights (for Unmerged: with the LoRA
	// branches merged into their weights).
	Reference *model.Classifier
	// Seed seeds the random pixels of the check.
	Seed uint64
	// Imported is the source already imported (from its folder), when the
	// caller has it: Unmerged then does not import it again.
	Imported *onnximport.Model
}

// Report says what an export wrote.
type Report struct {
	Path string
	Size int64 // bytes of the model file
	// Files are the other files written beside it: the new external data
	// file, copies of the source's data files.
	Files []string
	// Replaced counts the initializers given new data; Added the
	// initializers and nodes an unmerged export added.
	Replaced   int
	AddedInits int
	AddedNodes int
	Check
}

// DataFileName is the name of the external data file written for a model
// at out: out's name with ".data" appended.
func DataFileName(out string) string { return filepath.Base(out) + ".data" }

// Merged writes src to out with the data of the initializers named in
// weights replaced, each in its own form (raw_data, float_data or external
// data), and every other byte as it was; a key with a reader gives that node
// its own initializer, named as the key. An empty weights map gives back
// the source's bytes. srcDir is where src's external data files are read.
// External initializers go to out's data file (DataFileName): the replaced
// ones with their new data, the untouched ones with their bytes copied from
// the source's files, so that a model of external weights is written as one
// model and one data file; the data files of other external tensors (in
// node attributes) are copied beside out unless already there. The written file is imported again and checked against
// o.Reference before it is moved into place.
func Merged(src *onnx.ModelProto, srcDir string, weights map[layers.WeightKey]*graph.Tensor, out string, o Options) (*Report, error) {
	b, err := newBuild(src, srcDir, out, weights)
	if err != nil {
		return nil, err
	}
	ref := o.Reference
	if ref == nil {
		if ref, err = withWeights(src, srcDir, weights); err != nil {
			return nil, err
		}
	}
	return b.write(ref, o)
}

// withWeights is the source model with some initializers replaced, in memory.
func withWeights(src *onnx.ModelProto, srcDir string, weights map[layers.WeightKey]*graph.Tensor) (*model.Classifier, error) {
	m, err := onnximport.Import(src, srcDir)
	if err != nil {
		return nil, fmt.Errorf("the source model: %v", err)
	}
	c, err := hyperat.WithWeights(m, m.Graph, weights)
	if err != nil {
		return nil, fmt.Errorf("the source model with the new weights: %v", err)
	}
	return c, nil
}

// build is a model being made from a source: a shallow copy of it whose
// replaced parts are new.
type build struct {
	src      *onnx.ModelProto
	srcDir   string
	out      string
	model    *onnx.ModelProto
	graph    *onnx.GraphProto
	data     dataFile
	replaced map[string]bool
	moved    map[string]bool // untouched external initializers, in the new data file
	added    int             // nodes
	addedIni int
}

func newBuild(src *onnx.ModelProto, srcDir, out string, weights map[layers.WeightKey]*graph.Tensor) (*build, error) {
	if src.GetGraph() == nil {
		return nil, errors.New("the source has no graph")
	}
	if out == "" {
		return nil, errors.New("no output path")
	}
	have := map[string]*onnx.TensorProto{}
	for _, tp := range src.GetGraph().GetInitializer() {
		have[tp.GetName()] = tp
	}
	keys := slices.SortedFunc(maps.Keys(weights), layers.WeightKey.Compare)
	for _, k := range keys {
		if have[k.Init] == nil {
			return nil, fmt.Errorf("weight %q is not an initializer of the model", k.Init)
		}
	}
	b := &build{src: src, srcDir: srcDir, out: out, replaced: map[string]bool{}, moved: map[string]bool{},
		data: dataFile{name: DataFileName(out)}}
	b.model = shallow(src)
	b.graph = shallow(src.GetGraph())
	b.model.Graph = b.graph
	inits := make([]*onnx.TensorProto, len(src.Graph.Initializer))
	for i, tp := range src.Graph.Initializer {
		inits[i] = tp
		t, ok := weights[layers.WeightKey{Init: tp.GetName()}]
		if !ok {
			continue
		}
		if err := checkReplacement(tp, t); err != nil {
			return nil, err
		}
		inits[i] = replaced(tp, t, &b.data)
		b.replaced[tp.GetName()] = true
	}
	// the untouched external initializers join the replaced ones in the
	// new data file: the output is one model and one data file, whatever
	// share of the source's data files it still reads
	for i, tp := range inits {
		if formOf(tp) != formExternal || b.replaced[tp.GetName()] {
			continue
		}
		nt, err := relocated(tp, srcDir, &b.data)
		if err != nil {
			return nil, err
		}
		inits[i] = nt
		b.moved[tp.GetName()] = true
	}
	// a key with a reader: that node gets its own copy of a shared
	// initializer, holding the new data, named as the key
	var nodes []*onnx.NodeProto
	for _, k := range keys {
		if k.Reader == "" {
			continue
		}
		if nodes == nil {
			nodes = slices.Clone(src.Graph.Node)
		}
		tp := have[k.Init]
		if err := checkReplacement(tp, weights[k]); err != nil {
			return nil, err
		}
		n := k.String()
		found := false
		for i, nd := range nodes {
			if len(nd.GetOutput()) == 0 || nd.GetOutput()[0] != k.Reader {
				continue
			}
			cp := shallow(nd)
			cp.Input = slices.Clone(nd.Input)
			for j, in := range cp.Input {
				if in == k.Init {
					cp.Input[j], found = n, true
				}
			}
			nodes[i] = cp
		}
		if !found {
			return nil, fmt.Errorf("weight %q: no node producing %q reads %q", n, k.Reader, k.Init)
		}
		nt := replaced(tp, weights[k], &b.data)
		nt.Name = proto.String(n)
		inits = append(inits, nt)
		b.replaced[n] = true
		b.addedIni++
	}
	if nodes != nil {
		b.graph.Node = nodes
	}
	b.graph.Initializer = inits
	return b, nil
}

// files lists what goes beside the model: the new data file, and the
// source's data files still read (by tensors of node attributes).
func (b *build) files() ([]outFile, error) {
	var files []outFile
	newData := len(b.data.segments) > 0
	if newData {
		files = append(files, outFile{rel: b.data.name, write: b.data.write})
	}
	skip := maps.Clone(b.replaced)
	maps.Copy(skip, b.moved)
	for _, loc := range externalLocations(b.src, skip) {
		rel, err := LocalPath(loc)
		if err != nil {
			return nil, err
		}
		if newData && rel == b.data.name || rel == filepath.Base(b.out) {
			return nil, fmt.Errorf("the model's external data file %q has the name of a file the export writes; choose another output name", loc)
		}
		files = append(files, outFile{rel: rel, from: filepath.Join(b.srcDir, rel)})
	}
	return files, nil
}

// protect adds the source's own data files to the caller's list.
func (b *build) protect(o Options) ([]Protected, error) {
	p := slices.Clone(o.Protect)
	for _, loc := range externalLocations(b.src, nil) {
		rel, err := LocalPath(loc)
		if err != nil {
			return nil, err
		}
		p = append(p, Protected{Path: filepath.Join(b.srcDir, rel), What: "an external data file of the source model"})
	}
	return p, nil
}

func (b *build) write(ref *model.Classifier, o Options) (*Report, error) {
	files, err := b.files()
	if err != nil {
		return nil, err
	}
	protect, err := b.protect(o)
	if err != nil {
		return nil, err
	}
	data, err := marshal(b.model)
	if err != nil {
		return nil, err
	}
	// The new model's messages are not needed once encoded: let the check
	// run without them.
	b.model, b.graph = nil, nil
	var ck *Check
	w, err := writeChecked(b.out, data, files, protect, func(staged string) error {
		c, verr := verify(staged, ref, o.Seed)
		ck = c
		return verr
	})
	if err != nil {
		return nil, err
	}
	return &Report{Path: w.path, Size: w.size, Files: w.files, Replaced: len(b.replaced),
		AddedInits: b.addedIni, AddedNodes: b.added, Check: *ck}, nil
}
