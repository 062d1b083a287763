package data

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// expected is what Open looks for, for error messages.
const expected = "expected MNIST-style IDX files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and their labels), " +
	"CIFAR binary batches (data_batch_1.bin... and test_batch.bin, or CIFAR-100's train.bin and test.bin), " +
	"or one subfolder of PNG/JPEG images per class (optionally inside train/ and test/ or val/)"

// knownSubdirs are looked into when the folder itself holds no IDX or CIFAR
// files: the folders the official archives and torchvision unpack into.
var knownSubdirs = []string{"cifar-10-batches-bin", "cifar-100-binary", "raw"}

// Open reads the requested split of the dataset in the folder path, telling the
// format from the folder's contents:
//
//   - IDX (MNIST, Fashion-MNIST, KMNIST, EMNIST...): train-images-idx3-ubyte and
//     train-labels-idx1-ubyte for Train, t10k-images-idx3-ubyte and
//     t10k-labels-idx1-ubyte for Test ("test-" instead of "t10k-", a dot
//     before "idx", a name prefix such as "emnist-digits-" and a ".gz" suffix
//     are accepted; gzip is recognized by its magic bytes).
//   - CIFAR-10 binary: data_batch_N.bin for Train (those present, by N),
//     test_batch.bin for Test.
//   - CIFAR-100 binary: train.bin and test.bin.
//   - Image folders: path/<class>/... for both splits, or
//     path/train/<class>/... for Train and path/test/<class>/... (or val/,
//     valid/, validation/) for Test.
//
// IDX and CIFAR files are also found in a subfolder named
// cifar-10-batches-bin, cifar-100-binary, raw, or <any>/raw (torchvision's
// layout). Errors are one line naming the path and what was expected.
func Open(path string, split Split) (*Dataset, error) {
	if split != Train && split != Test {
		return nil, errorf(ErrArgument, path, "unknown split %v", split)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, wrapf(ErrNoDataset, err, path, "cannot open: %v", unwrapPathErr(err))
	}
	if !st.IsDir() {
		return nil, errorf(ErrNoDataset, path, "is a file, not a folder: %s", expected)
	}
	found, err := findFiles(path)
	if err != nil {
		return nil, err
	}
	if len(found) > 1 {
		var names []string
		for _, f := range found {
			names = append(names, f.describe())
		}
		return nil, errorf(ErrNoDataset, path, "holds several datasets (%s): point at the folder of one", strings.Join(names, "; "))
	}
	if len(found) == 1 {
		return found[0].open(path, split)
	}
	return openFolder(path, split)
}

// fileSet is one IDX or CIFAR dataset found in a folder.
type fileSet struct {
	dir    string
	format Format
	prefix string // IDX: the file name prefix shared by the four files
	// IDX: the images and labels files of each split ("" when missing).
	// CIFAR: the batch files of each split.
	train, test []string
}

func (f *fileSet) describe() string {
	if f.prefix != "" {
		return fmt.Sprintf("%s files %s* in %s", f.format, f.prefix, f.dir)
	}
	return fmt.Sprintf("%s files in %s", f.format, f.dir)
}

// findFiles looks for IDX and CIFAR files in dir, then in its known subfolders.
func findFiles(dir string) ([]*fileSet, error) {
	sets, err := scanFiles(dir)
	if err != nil || len(sets) > 0 {
		return sets, err
	}
	subs, err := subdirs(dir)
	if err != nil {
		return nil, wrapf(ErrNoDataset, err, dir, "cannot list: %v", unwrapPathErr(err))
	}
	var candidates []string
	for _, s := range subs {
		if slices.Contains(knownSubdirs, strings.ToLower(s)) {
			candidates = append(candidates, filepath.Join(dir, s))
		}
		if st, err := os.Stat(filepath.Join(dir, s, "raw")); err == nil && st.IsDir() {
			candidates = append(candidates, filepath.Join(dir, s, "raw"))
		}
	}
	for _, c := range candidates {
		more, err := scanFiles(c)
		if err != nil {
			return nil, err
		}
		sets = append(sets, more...)
	}
	return sets, nil
}

// idxRole is what an IDX file name says about the file.
type idxRole struct {
	prefix string
	split  Split
	labels bool
}

// idxSuffixes maps the accepted name endings (after removing ".gz", lower
// case) to their role.
var idxSuffixes = func() map[string]idxRole {
	m := map[string]idxRole{}
	for _, sp := range []struct {
		word  string
		split Split
	}{{"train", Train}, {"t10k", Test}, {"test", Test}} {
		for _, sep := range []string{"-", "."} {
			m[sp.word+"-images"+sep+"idx3-ubyte"] = idxRole{split: sp.split}
			m[sp.word+"-labels"+sep+"idx1-ubyte"] = idxRole{split: sp.split, labels: true}
		}
	}
	return m
}()

// parseIDXName tells whether a file name is one of an IDX dataset's.
func parseIDXName(name string) (idxRole, bool) {
	lower := strings.TrimSuffix(strings.ToLower(name), ".gz")
	for suffix, role := range idxSuffixes {
		if !strings.HasSuffix(lower, suffix) {
			continue
		}
		prefix := lower[:len(lower)-len(suffix)]
		if prefix != "" && !strings.ContainsAny(prefix[len(prefix)-1:], "-_.") {
			continue
		}
		role.prefix = prefix
		return role, true
	}
	return idxRole{}, false
}

// better tells whether IDX file name a is preferred over b for the same role:
// uncompressed first (faster), then the dashed spelling, then by name.
func better(a, b string) bool {
	ga, gb := strings.HasSuffix(strings.ToLower(a), ".gz"), strings.HasSuffix(strings.ToLower(b), ".gz")
	if ga != gb {
		return !ga
	}
	da, db := strings.Contains(a, "-idx"), strings.Contains(b, "-idx")
	if da != db {
		return da
	}
	return a < b
}

// cifarBatchName parses "data_batch_N.bin" (lower case).
func cifarBatchName(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "data_batch_")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, ".bin")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

// scanFiles finds the IDX and CIFAR datasets whose files are directly in dir.
func scanFiles(dir string) ([]*fileSet, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, wrapf(ErrNoDataset, err, dir, "cannot list: %v", unwrapPathErr(err))
	}
	type idxFiles struct{ files [2][2]string } // [split][labels]
	idx := map[string]*idxFiles{}
	type batch struct {
		n    int
		name string
	}
	var batches []batch
	var testBatch, train100, test100 string
	for _, e := range entries {
		name := e.Name()
		if hidden(name) || isDir(filepath.Join(dir, name), e) {
			continue
		}
		if role, ok := parseIDXName(name); ok {
			g := idx[role.prefix]
			if g == nil {
				g = &idxFiles{}
				idx[role.prefix] = g
			}
			l := 0
			if role.labels {
				l = 1
			}
			if cur := g.files[role.split][l]; cur == "" || better(name, cur) {
				g.files[role.split][l] = name
			}
			continue
		}
		lower := strings.ToLower(name)
		if n, ok := cifarBatchName(lower); ok {
			batches = append(batches, batch{n, name})
		}
		switch lower {
		case "test_batch.bin":
			testBatch = name
		case "train.bin":
			train100 = name
		case "test.bin":
			test100 = name
		}
	}
	var sets []*fileSet
	prefixes := make([]string, 0, len(idx))
	for p := range idx {
		prefixes = append(prefixes, p)
	}
	slices.Sort(prefixes)
	for _, p := range prefixes {
		g := idx[p]
		s := &fileSet{dir: dir, format: IDX, prefix: p, train: make([]string, 2), test: make([]string, 2)}
		for l := range 2 {
			s.train[l] = join(dir, g.files[Train][l])
			s.test[l] = join(dir, g.files[Test][l])
		}
		sets = append(sets, s)
	}
	if len(batches) > 0 || testBatch != "" {
		slices.SortFunc(batches, func(a, b batch) int { return a.n - b.n })
		s := &fileSet{dir: dir, format: CIFAR10}
		for _, b := range batches {
			s.train = append(s.train, filepath.Join(dir, b.name))
		}
		if testBatch != "" {
			s.test = []string{filepath.Join(dir, testBatch)}
		}
		sets = append(sets, s)
	}
	if train100 != "" || test100 != "" {
		s := &fileSet{dir: dir, format: CIFAR100}
		if train100 != "" {
			s.train = []string{filepath.Join(dir, train100)}
		}
		if test100 != "" {
			s.test = []string{filepath.Join(dir, test100)}
		}
		sets = append(sets, s)
	}
	return sets, nil
}

func join(dir, name string) string {
	if name == "" {
		return ""
	}
	return filepath.Join(dir, name)
}

// open reads the requested split of a found IDX or CIFAR dataset.
func (f *fileSet) open(path string, split Split) (*Dataset, error) {
	files := f.train
	if split == Test {
		files = f.test
	}
	d := &Dataset{path: path, dir: f.dir, format: f.format, split: split}
	switch f.format {
	case IDX:
		if files[0] == "" || files[1] == "" {
			return nil, f.idxMissing(split, files)
		}
		s, err := loadIDXPair(files[0], files[1])
		if err != nil {
			return nil, err
		}
		d.n, d.c, d.h, d.w, d.pix, d.labels = s.n, 1, s.h, s.w, s.pix, s.labels
		d.classes = int(slices.Max(s.labels)) + 1
		// Count classes over the other split's labels too (when readable), so
		// both splits agree even if one lacks the last classes.
		other := f.test
		if split == Test {
			other = f.train
		}
		if other[1] != "" {
			if lab, err := readIDXLabels(other[1]); err == nil && len(lab) > 0 {
				d.classes = max(d.classes, int(slices.Max(lab))+1)
			}
		}
	case CIFAR10, CIFAR100:
		if len(files) == 0 {
			return nil, f.cifarMissing(split)
		}
		kind := cifar10
		if f.format == CIFAR100 {
			kind = cifar100
		}
		s, err := loadCIFAR(files, kind)
		if err != nil {
			return nil, err
		}
		d.n, d.c, d.h, d.w, d.pix, d.labels = s.n, 3, cifarSide, cifarSide, s.pix, s.labels
		d.classes = kind.classes
		if kind.classes == 10 {
			d.names = readNames(filepath.Join(f.dir, "batches.meta.txt"), 10)
			if d.names == nil {
				d.names = slices.Clone(cifar10Names)
			}
		} else {
			d.names = readNames(filepath.Join(f.dir, "fine_label_names.txt"), 100)
		}
	}
	return d, nil
}

func (f *fileSet) idxMissing(split Split, files []string) error {
	word := "train"
	if split == Test {
		word = "t10k"
	}
	what := []string{"images", "labels"}
	idxN := []string{"idx3", "idx1"}
	var missing []string
	for l, name := range files {
		if name == "" {
			missing = append(missing, fmt.Sprintf("%s%s-%s-%s-ubyte[.gz]", f.prefix, word, what[l], idxN[l]))
		}
	}
	return errorf(ErrSplitMissing, f.dir, "no %s split: missing %s", split, strings.Join(missing, " and "))
}

func (f *fileSet) cifarMissing(split Split) error {
	want := map[Format][2]string{
		CIFAR10:  {"data_batch_1.bin ... data_batch_5.bin", "test_batch.bin"},
		CIFAR100: {"train.bin", "test.bin"},
	}[f.format]
	return errorf(ErrSplitMissing, f.dir, "no %s split: %s holds %s files but no %s", split, f.dir, f.format, want[split])
}

// openFolder reads an image folder, or explains why path holds no dataset.
func openFolder(path string, split Split) (*Dataset, error) {
	subs, err := subdirs(path)
	if err != nil {
		return nil, wrapf(ErrNoDataset, err, path, "cannot list: %v", unwrapPathErr(err))
	}
	if len(subs) == 0 {
		return nil, noDataset(path)
	}
	// A split layout has train/ and/or test/ (val/...) holding class folders.
	splitDirs := map[Split]string{}
	for _, sp := range []Split{Train, Test} {
		for _, name := range splitDirNames[sp] {
			if i := slices.IndexFunc(subs, func(s string) bool { return strings.EqualFold(s, name) }); i >= 0 {
				sub := filepath.Join(path, subs[i])
				if inner, err := subdirs(sub); err == nil && len(inner) > 0 {
					splitDirs[sp] = sub
					break
				}
				// train/ holding images without class folders is a mistake,
				// not a class named "train".
				if err := noDataset(sub); strings.Contains(err.Error(), "no class subfolders") {
					return nil, err
				}
			}
		}
	}
	var dirs map[Split]string
	if len(splitDirs) > 0 {
		if splitDirs[split] == "" {
			other := splitDirs[Train] + splitDirs[Test]
			want := "train/"
			if split == Test {
				want = "test/ or val/"
			}
			return nil, errorf(ErrSplitMissing, path, "no %s split: found %s but no %s with class subfolders", split, other, want)
		}
		dirs = splitDirs
	} else {
		dirs = map[Split]string{Train: path, Test: path}
	}
	// Class ids from the union of both splits' class folders, so they agree.
	var classes []string
	for _, sp := range []Split{Train, Test} {
		if dirs[sp] == "" {
			continue
		}
		cs, err := subdirs(dirs[sp])
		if err != nil {
			return nil, wrapf(ErrNoDataset, err, dirs[sp], "cannot list: %v", unwrapPathErr(err))
		}
		classes = append(classes, cs...)
	}
	slices.Sort(classes)
	classes = slices.Compact(classes)
	labelOf := make(map[string]int, len(classes))
	for i, c := range classes {
		labelOf[c] = i
	}
	dir := dirs[split]
	mine, err := subdirs(dir)
	if err != nil {
		return nil, wrapf(ErrNoDataset, err, dir, "cannot list: %v", unwrapPathErr(err))
	}
	fsplit, err := collectImages(dir, mine, labelOf)
	if err != nil {
		return nil, err
	}
	if len(fsplit.files) == 0 {
		if len(splitDirs) == 0 {
			return nil, noDataset(path)
		}
		return nil, errorf(ErrNoDataset, dir, "no PNG or JPEG images in its class subfolders (%s)", strings.Join(firstFew(mine, 5), ", "))
	}
	if err := fsplit.scanHeaders(); err != nil {
		return nil, err
	}
	d := &Dataset{
		path: path, dir: dir, format: ImageFolder, split: split,
		n: len(fsplit.files), c: fsplit.c, classes: len(classes), names: classes, labels: fsplit.labels,
		folder: fsplit,
	}
	if fsplit.minH == fsplit.maxH && fsplit.minW == fsplit.maxW {
		d.h, d.w = fsplit.minH, fsplit.minW
	}
	d.cache.limit = DefaultCacheBytes
	return d, nil
}

func firstFew(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(slices.Clone(s[:n]), fmt.Sprintf("and %d more", len(s)-n))
}

// noDataset explains that path holds nothing readable, with a hint when it
// holds something close (an archive, CIFAR's Python batches, loose images).
func noDataset(path string) error {
	entries, _ := os.ReadDir(path)
	var archives, pickles []string
	images := 0
	for _, e := range entries {
		name := strings.ToLower(e.Name())
		switch {
		case strings.HasSuffix(name, ".tar.gz") || strings.HasSuffix(name, ".tgz") || strings.HasSuffix(name, ".zip") || strings.HasSuffix(name, ".tar"):
			archives = append(archives, e.Name())
		case name == "data_batch_1" || name == "test_batch" || name == "cifar-10-batches-py" || name == "cifar-100-python":
			pickles = append(pickles, e.Name())
		case isImageName(name) && !e.IsDir():
			images++
		}
	}
	switch {
	case len(pickles) > 0:
		return errorf(ErrNoDataset, path, "holds CIFAR's Python (pickle) version (%s): use the binary version (cifar-10-binary.tar.gz or cifar-100-binary.tar.gz, extracted)", pickles[0])
	case len(archives) > 0:
		return errorf(ErrNoDataset, path, "holds the archive %s: extract it first (%s)", archives[0], expected)
	case images > 0:
		return errorf(ErrNoDataset, path, "holds %d image%s but no class subfolders: put each class's images in a subfolder named after it", images, plural(images))
	}
	return errorf(ErrNoDataset, path, "no dataset found: %s", expected)
}
