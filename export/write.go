package export

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/hyperat/hyperat/fsx"
)

// Protected is a file an export must never write.
type Protected struct {
	Path string
	What string // what it is, for the error message: "the source model"
}

// outFile is one file of an export besides the model, by its path relative
// to the output's folder: new bytes, or a copy of an existing file.
type outFile struct {
	rel   string
	data  []byte                // the contents, or
	write func(io.Writer) error // what writes them, or
	from  string                // the file to copy
	// inPlace: the output folder already holds this file with these
	// contents; it is staged for the check only, not moved.
	inPlace bool
}

// written is what a write left in place.
type written struct {
	path  string   // the model
	size  int64    // its bytes
	files []string // the other files written, paths as the output path is given
}

// writeChecked writes the model (bytes) to out with its files, staged in a
// temporary folder inside out's folder: each file is synced, check runs on the
// staged model, and only when it passes are the files renamed into place, the
// model last. When anything fails the output folder is left as it was.
func writeChecked(out string, model []byte, files []outFile, protect []Protected, check func(staged string) error) (*written, error) {
	if err := CheckOutput(out, nil); err != nil {
		return nil, err
	}
	dir, base := filepath.Dir(out), filepath.Base(out)
	for i := range files {
		f := &files[i]
		if f.from == "" {
			continue
		}
		dst := filepath.Join(dir, f.rel)
		same, err := sameContents(dst, f.from)
		if err != nil {
			return nil, err
		}
		if same {
			f.inPlace = true
			continue
		}
		if _, err := os.Lstat(dst); err == nil {
			return nil, fmt.Errorf("%s exists and differs from the model's external data file %s; move it away or write the export into another folder", dst, f.from)
		}
	}

	targets := []string{out}
	for _, f := range files {
		if !f.inPlace {
			targets = append(targets, filepath.Join(dir, f.rel))
		}
	}
	for _, t := range targets {
		if err := CheckProtected(t, protect); err != nil {
			return nil, err
		}
	}

	stage, err := os.MkdirTemp(dir, "."+base+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("%s: cannot write in %s: %v", out, dir, fsx.Bare(err))
	}
	defer os.RemoveAll(stage)
	for _, f := range files {
		p := filepath.Join(stage, f.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Join(dir, f.rel), fsx.Bare(err))
		}
		switch {
		case f.inPlace: // staged for the check only: a link will do
			err = fsx.LinkOrCopy(f.from, p)
		case f.from != "": // a copy, so that the output shares no file with its source
			err = fsx.CopyNew(f.from, p)
		case f.write != nil:
			err = fsx.WriteNewFunc(p, f.write)
		default:
			err = fsx.WriteNew(p, f.data)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Join(dir, f.rel), fsx.Bare(err))
		}
	}
	staged := filepath.Join(stage, base)
	if err := fsx.WriteNew(staged, model); err != nil {
		return nil, fmt.Errorf("%s: %v", out, fsx.Bare(err))
	}
	// The check imports the staged file again: the encoded bytes are not
	// kept beside it, and their memory is collected now so that the import
	// reuses it instead of growing the heap by a model's size again.
	w := &written{path: out, size: int64(len(model))}
	model = nil
	runtime.GC()
	fsx.SyncDir(stage)
	if err := check(staged); err != nil {
		return nil, err
	}

	for _, f := range files {
		if f.inPlace {
			continue
		}
		dst := filepath.Join(dir, f.rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("%s: %v", dst, fsx.Bare(err))
		}
		if err := os.Rename(filepath.Join(stage, f.rel), dst); err != nil {
			return nil, fmt.Errorf("%s: %v", dst, fsx.Bare(err))
		}
		fsx.SyncDir(filepath.Dir(dst))
		w.files = append(w.files, dst)
	}
	if err := os.Rename(staged, out); err != nil {
		return nil, fmt.Errorf("%s: %v", out, fsx.Bare(err))
	}
	fsx.SyncDir(dir)
	return w, nil
}

// CheckOutput checks that the model file out may be written: its folder
// exists, it is no folder itself, and it is none of the protected files. The
// writes of this package check it first; a caller checks it before the work
// that leads to a write.
func CheckOutput(out string, protect []Protected) error {
	dir := filepath.Dir(out)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: the folder %s does not exist", out, dir)
	case err != nil:
		return fmt.Errorf("%s: %v", out, fsx.Bare(err))
	case !st.IsDir():
		return fmt.Errorf("%s: %s is not a folder", out, dir)
	}
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a folder; give the path of the ONNX file to write", out)
	}
	return CheckProtected(out, protect)
}

// CheckProtected refuses to write path when it is one of the protected
// files (the same file, or the same path once links are resolved).
func CheckProtected(path string, protect []Protected) error {
	for _, p := range protect {
		if samePath(path, p.Path) {
			return fmt.Errorf("refusing to write %s: it is %s", path, p.What)
		}
	}
	return nil
}

// sameContents reports whether a and b both exist with the same bytes (or
// are the same file). A missing a is no error.
func sameContents(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, nil
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, fmt.Errorf("%s: %v", b, fsx.Bare(err))
	}
	if os.SameFile(sa, sb) {
		return true, nil
	}
	if sa.Size() != sb.Size() || !sa.Mode().IsRegular() {
		return false, nil
	}
	fa, err := os.Open(a)
	if err != nil {
		return false, fmt.Errorf("%s: %v", a, fsx.Bare(err))
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, fmt.Errorf("%s: %v", b, fsx.Bare(err))
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea != nil || eb != nil {
			return ea != nil && eb != nil, nil
		}
	}
}

// samePath reports whether a and b name the same file: the same file on
// disk when both exist (links and case-insensitive names included), else the
// same absolute path once the folders' symbolic links are resolved.
func samePath(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return resolved(a) == resolved(b)
}

func resolved(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	dir, base := filepath.Split(abs)
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	return filepath.Join(dir, base)
}
