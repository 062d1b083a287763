package data

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Image folders follow torchvision's ImageFolder: ROOT/<class>/.../*.png|jpg|jpeg,
// the class names sorted (by their bytes, as Python sorts them) giving the label
// ids 0, 1, ... Hidden files and folders (starting with ".") are skipped, and so
// are other files (counted, and shown by Dataset.String).

// splitDirNames are the subfolders that make a split layout, by split.
var splitDirNames = map[Split][]string{
	Train: {"train"},
	Test:  {"test", "val", "valid", "validation"},
}

// isImageName reports whether a file name has a PNG or JPEG extension.
func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// subdirs lists the non-hidden subfolders of dir (following links), sorted.
func subdirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if hidden(e.Name()) {
			continue
		}
		if isDir(filepath.Join(dir, e.Name()), e) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// isDir reports whether an entry is a folder, following a symbolic link.
func isDir(path string, e fs.DirEntry) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink != 0 {
		st, err := os.Stat(path)
		return err == nil && st.IsDir()
	}
	return false
}

// folderSplit is the file list of one split of an image folder.
type folderSplit struct {
	dir     string
	files   []string
	labels  []int64
	skipped int // regular files that are not PNG or JPEG
	// From the image headers:
	c                      int // 1 when every image is gray, else 3
	gray                   int // gray images
	minH, minW, maxH, maxW int
}

// collectImages lists the images of each class folder of dir, recursively, in
// sorted path order. labelOf maps a class name to its id.
func collectImages(dir string, classes []string, labelOf map[string]int) (*folderSplit, error) {
	s := &folderSplit{dir: dir}
	for _, class := range classes {
		root := filepath.Join(dir, class)
		var files []string
		err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != root && hidden(e.Name()) {
				if e.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if e.IsDir() {
				return nil
			}
			if isImageName(e.Name()) && (e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) {
				files = append(files, path)
			} else {
				s.skipped++
			}
			return nil
		})
		if err != nil {
			return nil, wrapf(ErrNoDataset, err, root, "cannot list: %v", unwrapPathErr(err))
		}
		// ImageFolder's order: folder by folder (sorted paths), files sorted
		// within each, so a folder's own files come before its subfolders'.
		slices.SortFunc(files, func(a, b string) int {
			if c := strings.Compare(filepath.Dir(a), filepath.Dir(b)); c != 0 {
				return c
			}
			return strings.Compare(a, b)
		})
		for _, f := range files {
			s.files = append(s.files, f)
			s.labels = append(s.labels, int64(labelOf[class]))
		}
	}
	return s, nil
}

// scanHeaders reads every image's header (in parallel), checks that it is a
// PNG or JPEG of an accepted size, and records channels and sizes. The first
// failing file in list order is reported.
func (s *folderSplit) scanHeaders() error {
	type info struct {
		gray bool
		h, w int
		err  error
	}
	infos := make([]info, len(s.files))
	var wg sync.WaitGroup
	next := make(chan int, 256)
	for range min(2*runtime.GOMAXPROCS(0), max(len(s.files), 1)) {
		wg.Go(func() {
			for i := range next {
				f, err := os.Open(s.files[i])
				if err != nil {
					infos[i].err = wrapf(ErrFormat, err, s.files[i], "cannot open: %v", unwrapPathErr(err))
					continue
				}
				cfg, _, err := imageConfig(bufio.NewReader(f), MaxPixels)
				f.Close()
				if err != nil {
					infos[i].err = wrapf(ErrFormat, err, s.files[i], "%v", err)
					continue
				}
				infos[i] = info{gray: isGrayModel(cfg.ColorModel), h: cfg.Height, w: cfg.Width}
			}
		})
	}
	for i := range s.files {
		next <- i
	}
	close(next)
	wg.Wait()
	s.c = 1
	for i, in := range infos {
		if in.err != nil {
			bad := 0
			for _, o := range infos[i:] {
				if o.err != nil {
					bad++
				}
			}
			if bad > 1 {
				return wrapf(ErrFormat, in.err, "", "%v (and %d more unreadable images)", in.err, bad-1)
			}
			return in.err
		}
		if in.gray {
			s.gray++
		} else {
			s.c = 3
		}
		if i == 0 {
			s.minH, s.maxH, s.minW, s.maxW = in.h, in.h, in.w, in.w
		}
		s.minH, s.maxH = min(s.minH, in.h), max(s.maxH, in.h)
		s.minW, s.maxW = min(s.minW, in.w), max(s.maxW, in.w)
	}
	return nil
}

// imageCache keeps decoded images up to a byte budget (first come, first kept).
type imageCache struct {
	mu    sync.Mutex
	limit int64
	used  int64
	imgs  map[int]*planar
}

// DefaultCacheBytes is how much memory an image folder dataset uses by default
// to keep decoded images (see Dataset.SetCacheBytes).
const DefaultCacheBytes = 1 << 30

func (c *imageCache) get(i int) *planar {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.imgs[i]
}

func (c *imageCache) put(i int, p *planar) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.imgs[i]; ok || c.used+p.bytes() > c.limit {
		return
	}
	if c.imgs == nil {
		c.imgs = map[int]*planar{}
	}
	c.imgs[i] = p
	c.used += p.bytes()
}

func (c *imageCache) setLimit(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = n
	if c.used > n {
		c.imgs, c.used = nil, 0
	}
}

// loadImage decodes one image file.
func loadImage(path string) (*planar, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > 1<<30 {
		return nil, errorf(ErrFormat, path, "image file of %d bytes is too large", size)
	}
	b, err := readN(f, size, true)
	if err != nil {
		return nil, wrapf(ErrFormat, err, path, "cannot read: %v", unwrapPathErr(err))
	}
	p, err := decodeImage(b, MaxPixels)
	if err != nil {
		return nil, wrapf(ErrFormat, err, path, "%v", err)
	}
	return p, nil
}
