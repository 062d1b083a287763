package data

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/hyperat/hyperat/graph"
)

// Split chooses the training or the test part of a dataset.
type Split int

const (
	Train Split = iota
	Test
)

func (s Split) String() string {
	switch s {
	case Train:
		return "train"
	case Test:
		return "test"
	}
	return fmt.Sprintf("Split(%d)", int(s))
}

// Format names a dataset's on-disk format.
type Format string

const (
	IDX         Format = "IDX"          // MNIST family
	CIFAR10     Format = "CIFAR-10"     // CIFAR-10 binary batches
	CIFAR100    Format = "CIFAR-100"    // CIFAR-100 binary batches
	ImageFolder Format = "image folder" // one subfolder of PNG/JPEG images per class
)

// Dataset is one split of a labelled image dataset. IDX and CIFAR datasets are
// held in memory as bytes; image folders are decoded when a batch needs them
// and kept up to a memory budget. A Dataset is safe for concurrent use.
type Dataset struct {
	path   string // what was opened
	dir    string // the folder the files are in
	format Format
	split  Split

	n       int
	c, h, w int // native shape; h, w are 0 when image sizes vary
	classes int
	names   []string
	labels  []int64

	pix []byte // IDX and CIFAR: n×c×h×w, planar

	folder *folderSplit // image folders
	cache  imageCache
}

// Path is the path given to Open.
func (d *Dataset) Path() string { return d.path }

// Dir is the folder holding the dataset's files (Path, or the subfolder of it
// where the files were found).
func (d *Dataset) Dir() string { return d.dir }

// Format is the on-disk format.
func (d *Dataset) Format() Format { return d.format }

// Split is the split this Dataset holds.
func (d *Dataset) Split() Split { return d.split }

// Len is the number of examples.
func (d *Dataset) Len() int { return d.n }

// Classes is the number of classes: 10 for CIFAR-10, 100 for CIFAR-100, the
// number of class folders for an image folder (both splits together), and one
// more than the largest label of both splits' label files for IDX.
func (d *Dataset) Classes() int { return d.classes }

// ClassNames returns the class names in label order, or nil when the format
// does not name them (IDX, and CIFAR-100 without fine_label_names.txt).
func (d *Dataset) ClassNames() []string { return slices.Clone(d.names) }

// Shape is the native image shape: channels (1 gray, 3 RGB), height and width.
// For an image folder, c is 1 only when every image is gray, and h and w are 0
// when the images differ in size (see Sizes).
func (d *Dataset) Shape() (c, h, w int) { return d.c, d.h, d.w }

// Sizes is the range of image sizes: the smallest and largest height and width.
func (d *Dataset) Sizes() (minH, minW, maxH, maxW int) {
	if d.folder != nil {
		f := d.folder
		return f.minH, f.minW, f.maxH, f.maxW
	}
	return d.h, d.w, d.h, d.w
}

// Labels returns a copy of all labels, in example order.
func (d *Dataset) Labels() []int64 { return slices.Clone(d.labels) }

// Label is example i's label.
func (d *Dataset) Label(i int) int64 { return d.labels[i] }

// Source names where example i comes from: its file for an image folder,
// "FILE[i]" otherwise.
func (d *Dataset) Source(i int) string {
	if d.folder != nil {
		return d.folder.files[i]
	}
	return fmt.Sprintf("%s[%d]", d.dir, i)
}

// First returns the indices of the first n examples in file order (all of them
// when n <= 0 or n >= Len): what a --limit N option evaluates.
func (d *Dataset) First(n int) []int {
	if n <= 0 || n > d.n {
		n = d.n
	}
	return Range(n)
}

// SetCacheBytes sets how much memory an image folder may use to keep decoded
// images (DefaultCacheBytes at first; 0 decodes every time). IDX and CIFAR
// datasets are always fully in memory and ignore it.
func (d *Dataset) SetCacheBytes(n int64) { d.cache.setLimit(max(n, 0)) }

// String is a one-line summary, e.g.
// "IDX test split in fixtures/mnist: 1000 images 1x28x28, 10 classes".
func (d *Dataset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s split in %s: %d images ", d.format, d.split, d.dir, d.n)
	if d.h > 0 {
		fmt.Fprintf(&b, "%dx%dx%d", d.c, d.h, d.w)
	} else {
		minH, minW, maxH, maxW := d.Sizes()
		fmt.Fprintf(&b, "%s, %dx%d to %dx%d", channelWord(d.c), minH, minW, maxH, maxW)
	}
	fmt.Fprintf(&b, ", %d classes", d.classes)
	if f := d.folder; f != nil {
		if f.gray > 0 && f.c == 3 {
			fmt.Fprintf(&b, " (%d gray images)", f.gray)
		}
		if f.skipped > 0 {
			fmt.Fprintf(&b, ", %d other files skipped", f.skipped)
		}
	}
	return b.String()
}

func channelWord(c int) string {
	if c == 1 {
		return "gray"
	}
	return "RGB"
}

// checkTarget validates a model input shape.
func checkTarget(c, h, w int) error {
	if c != 1 && c != 3 {
		return errorf(ErrArgument, "", "%d channels requested: images convert only to 1 (gray) or 3 (RGB)", c)
	}
	if h <= 0 || w <= 0 || h > MaxSide || w > MaxSide || h*w > MaxPixels {
		return errorf(ErrArgument, "", "image size %dx%d requested: want 1 to %d per side", h, w, MaxSide)
	}
	return nil
}

// image returns example i's native pixels.
func (d *Dataset) image(i int) (*planar, error) {
	if d.folder == nil {
		size := d.c * d.h * d.w
		return &planar{c: d.c, h: d.h, w: d.w, pix: d.pix[i*size : (i+1)*size]}, nil
	}
	if p := d.cache.get(i); p != nil {
		return p, nil
	}
	p, err := loadImage(d.folder.files[i])
	if err != nil {
		return nil, err
	}
	d.cache.put(i, p)
	return p, nil
}

// Batch returns the examples at indices as a float32 tensor [len(indices), c, h, w]
// of pixels in [0, 1], converted to c channels and resized to h×w as described
// in the package documentation (identity, bit for bit v/255, when they match
// the native shape), and their labels. The work is spread over all cores; the
// result does not depend on how.
func (d *Dataset) Batch(indices []int, c, h, w int) (*graph.Tensor, []int64, error) {
	if err := checkTarget(c, h, w); err != nil {
		return nil, nil, err
	}
	for _, i := range indices {
		if i < 0 || i >= d.n {
			return nil, nil, errorf(ErrArgument, d.dir, "example index %d out of range [0, %d)", i, d.n)
		}
	}
	x := graph.NewTensor(graph.Float32, []int{len(indices), c, h, w})
	labels := make([]int64, len(indices))
	for k, i := range indices {
		labels[k] = d.labels[i]
	}
	size := c * h * w
	workers := 1
	if d.folder != nil || len(indices)*size >= 1<<16 {
		workers = min(runtime.GOMAXPROCS(0), len(indices))
	}
	errs := make([]error, len(indices))
	var wg sync.WaitGroup
	for wk := range max(workers, 1) {
		wg.Go(func() {
			cv := newConverter(c, h, w)
			for k := wk; k < len(indices); k += workers {
				p, err := d.image(indices[k])
				if err != nil {
					errs[k] = err
					continue
				}
				cv.convert(x.F[k*size:(k+1)*size], p.pix, p.c, p.h, p.w)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return x, labels, nil
}

// Conversion describes in one line what Batch does to reach the model's input
// c×h×w, e.g. "images 1x28x28 -> 3x224x224: gray replicated to RGB, enlarged
// by bilinear interpolation", or "images 1x28x28 used as they are".
func (d *Dataset) Conversion(c, h, w int) string {
	var from string
	minH, minW, maxH, maxW := d.Sizes()
	if d.h > 0 {
		from = fmt.Sprintf("%dx%dx%d", d.c, d.h, d.w)
	} else {
		from = fmt.Sprintf("%s %dx%d to %dx%d", channelWord(d.c), minH, minW, maxH, maxW)
	}
	to := fmt.Sprintf("%dx%dx%d", c, h, w)
	var steps []string
	switch {
	case d.c == 3 && c == 1:
		steps = append(steps, "RGB to gray by ITU-R 601 luma")
	case c == 3 && d.c == 1:
		steps = append(steps, "gray replicated to RGB")
	case c == 3 && d.folder != nil && d.folder.gray > 0:
		steps = append(steps, fmt.Sprintf("%d gray images replicated to RGB", d.folder.gray))
	}
	steps = append(steps, resizeWords(minH, minW, maxH, maxW, h, w)...)
	if len(steps) == 0 {
		return fmt.Sprintf("images %s used as they are", from)
	}
	return fmt.Sprintf("images %s -> %s: %s", from, to, strings.Join(steps, ", "))
}

// CheckFits reports, in one line, why the dataset cannot feed a model taking
// modelC×modelH×modelW images and giving modelClasses logits, or nil. Labels
// must be below modelClasses (not checked when modelClasses <= 0), and the
// model must take 1 or 3 channels. A different image size is not an error:
// Batch resizes (see Conversion for the line to show the user).
func CheckFits(ds *Dataset, modelC, modelH, modelW, modelClasses int) error {
	if ds == nil {
		return errorf(ErrArgument, "", "no dataset")
	}
	if modelC != 1 && modelC != 3 {
		return errorf(ErrMismatch, ds.path, "the model takes %d input channels; %s images convert only to 1 (gray) or 3 (RGB)", modelC, channelWord(ds.c))
	}
	if modelH <= 0 || modelW <= 0 || modelH > MaxSide || modelW > MaxSide || modelH*modelW > MaxPixels {
		return errorf(ErrMismatch, ds.path, "the model's input size %dx%d is not usable (1 to %d per side)", modelH, modelW, MaxSide)
	}
	if modelClasses > 0 && ds.classes > modelClasses {
		names := ""
		if ds.format == ImageFolder {
			names = " (one per subfolder)"
		}
		return errorf(ErrMismatch, ds.path, "dataset has %d classes%s, the model outputs %d", ds.classes, names, modelClasses)
	}
	return nil
}

// View is a Dataset fixed to one model input shape, with int labels: it
// satisfies interfaces of the form Batch(indices []int) (*graph.Tensor, []int, error).
type View struct {
	D       *Dataset
	C, H, W int
}

// View returns the dataset as seen by a model taking c×h×w images.
func (d *Dataset) View(c, h, w int) *View { return &View{D: d, C: c, H: h, W: w} }

// Len is the number of examples.
func (v *View) Len() int { return v.D.Len() }

// Batch is Dataset.Batch at the view's shape, labels as int.
func (v *View) Batch(indices []int) (*graph.Tensor, []int, error) {
	x, l, err := v.D.Batch(indices, v.C, v.H, v.W)
	if err != nil {
		return nil, nil, err
	}
	y := make([]int, len(l))
	for i, v := range l {
		y[i] = int(v)
	}
	return x, y, nil
}

// resizeWords describes resizing images of heights minH..maxH and widths
// minW..maxW to h×w (nothing when they all have that size already).
func resizeWords(minH, minW, maxH, maxW, h, w int) []string {
	enlarge := minH < h || minW < w
	shrink := maxH > h || maxW > w
	var out []string
	switch {
	case enlarge && shrink && minH == maxH && minW == maxW:
		out = append(out, fmt.Sprintf("resized (height by %s, width by %s)", filterWords(minH, h), filterWords(minW, w)))
	case enlarge && shrink:
		out = append(out, "resized (bilinear interpolation where enlarged, area averaging where shrunk)")
	case enlarge:
		out = append(out, "enlarged by bilinear interpolation")
	case shrink:
		out = append(out, "shrunk by area averaging")
	}
	if (enlarge || shrink) && minH == maxH && minW == maxW && int64(minH)*int64(w) != int64(minW)*int64(h) {
		out = append(out, "aspect ratio not kept")
	}
	return out
}

func filterWords(in, out int) string {
	switch {
	case out > in:
		return "bilinear interpolation"
	case out < in:
		return "area averaging"
	}
	return "copy"
}
