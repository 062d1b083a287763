// Package fsx holds the file helpers the other packages share: the atomic
// replacement of a file (from bytes or as a streamed copy), the synced
// creation and copy of new files, the sync of a folder, the read-only
// mapping of a file (Map), and the form of an os error that leaves its path
// out (for messages that name the file themselves). It imports only the standard
// library, so every package of the project may use it.
package fsx

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile atomically replaces path with data, so that a reader, a crash or
// a full disk never sees a partial file: data goes to a temporary file in the
// same folder, is synced, and is renamed over the target; the folder is
// synced last. An error names path, never the temporary file, which is
// removed.
func WriteFile(path string, data []byte) error {
	return replace(path, writeBytes(data))
}

// WriteFileFunc is WriteFile with the contents written by write, as a
// stream.
func WriteFileFunc(path string, write func(io.Writer) error) error {
	return replace(path, write)
}

// CopyFile atomically replaces dst with a copy of src, as WriteFile does,
// streaming the bytes (the kernel copies them where it can), so a file of
// any size costs no memory. An error names dst, or src when it cannot be
// read.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("%s: %v", src, Bare(err))
	}
	defer in.Close()
	return replace(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// replace writes path atomically with write.
func replace(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%s: %v", path, Bare(err))
	}
	tmp := f.Name()
	// CreateTemp makes the file private; give it the usual mode of a new
	// file (0644 before the umask, which Chmod does not apply, so take the
	// conservative 0644 as is)
	if err = f.Chmod(0o644); err != nil {
		f.Close()
	} else {
		err = fill(f, write)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %v", path, Bare(err))
	}
	SyncDir(dir)
	return nil
}

// WriteNew creates path, which must not exist, with data and syncs it to
// disk. Errors are the os package's.
func WriteNew(path string, data []byte) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	return fill(f, writeBytes(data))
}

// WriteNewFunc is WriteNew with the contents written by write, as a
// stream.
func WriteNewFunc(path string, write func(io.Writer) error) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	return fill(f, write)
}

// CopyNew copies src to dst, which must not exist, and syncs it. Errors are
// the os package's.
func CopyNew(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := create(dst)
	if err != nil {
		return err
	}
	return fill(out, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// LinkOrCopy makes dst a hard link of src, or a synced copy where links
// cannot be made (another file system).
func LinkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return CopyNew(src, dst)
}

// SyncDir syncs a folder, so that the names just made or renamed in it
// survive a crash. It is best effort: not every system can sync a folder.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Bare drops the path from an os error (a *fs.PathError or an
// *os.LinkError), for messages that name the file themselves.
func Bare(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func create(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

func writeBytes(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

// fill writes f's contents with write, syncs f and closes it; f is closed
// whatever fails.
func fill(f *os.File, write func(io.Writer) error) error {
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
