package data

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
)

// CIFAR binary batches are plain sequences of fixed-size records: CIFAR-10's
// hold 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue,
// each a 32×32 image in row-major order); CIFAR-100's hold 2 label bytes (the
// coarse label 0..19, then the fine label 0..99, the one used here) then the
// same 3072 pixel bytes.

const (
	cifarSide   = 32
	cifarPixels = 3 * cifarSide * cifarSide
)

// cifar10Names are CIFAR-10's classes in label order, used when the folder has
// no batches.meta.txt.
var cifar10Names = []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}

// cifarKind describes one of the two record layouts.
type cifarKind struct {
	name      string
	labelLen  int
	classes   int
	coarseMax int // CIFAR-100's coarse labels are below this; 0 for CIFAR-10
}

var (
	cifar10  = cifarKind{name: "CIFAR-10", labelLen: 1, classes: 10}
	cifar100 = cifarKind{name: "CIFAR-100", labelLen: 2, classes: 100, coarseMax: 20}
)

func (k cifarKind) record() int { return k.labelLen + cifarPixels }

func (k cifarKind) other() cifarKind {
	if k.labelLen == 1 {
		return cifar100
	}
	return cifar10
}

// cifarSplit is one split in memory: n images of 3×32×32, planar.
type cifarSplit struct {
	n      int
	pix    []byte
	labels []int64
}

// readCIFAR appends the records of one batch file to s. size is r's byte count
// (CIFAR files are read whole, so it must be known).
func readCIFAR(r io.Reader, size int64, kind cifarKind, name string, s *cifarSplit) error {
	rec := int64(kind.record())
	if size == 0 {
		return errorf(ErrFormat, name, "empty file: expected %s records of %d bytes", kind.name, rec)
	}
	br := bufio.NewReaderSize(r, int(min(size, 1<<16)))
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == gzipMagic[0] && head[1] == gzipMagic[1] {
		return errorf(ErrFormat, name, "is gzip-compressed: extract the CIFAR binary batches first")
	}
	if size%rec != 0 {
		hint := ""
		if o := kind.other(); size%int64(o.record()) == 0 {
			hint = " (its size fits " + o.name + "'s records: is the file named right?)"
		}
		return errorf(ErrFormat, name, "%d bytes is not a whole number of %s records (%d label byte(s) + %d pixel bytes = %d)%s",
			size, kind.name, kind.labelLen, cifarPixels, rec, hint)
	}
	count := size / rec
	if int64(s.n)+count > maxPayload/cifarPixels {
		return errorf(ErrFormat, name, "%d records exceed the %d accepted", count, maxPayload/cifarPixels)
	}
	start := s.n
	s.pix = append(s.pix, make([]byte, int(count)*cifarPixels)...)
	var label [2]byte
	for i := 0; i < int(count); i++ {
		if _, err := io.ReadFull(br, label[:kind.labelLen]); err != nil {
			return cifarReadErr(name, err, i)
		}
		off := (start + i) * cifarPixels
		if _, err := io.ReadFull(br, s.pix[off:off+cifarPixels]); err != nil {
			return cifarReadErr(name, err, i)
		}
		l := int64(label[kind.labelLen-1])
		if kind.coarseMax > 0 && int(label[0]) >= kind.coarseMax {
			return errorf(ErrFormat, name, "record %d has coarse label %d; %s coarse labels are 0..%d (is this a %s file?)",
				i, label[0], kind.name, kind.coarseMax-1, kind.other().name)
		}
		if l >= int64(kind.classes) {
			return errorf(ErrFormat, name, "record %d has label %d; %s labels are 0..%d", i, l, kind.name, kind.classes-1)
		}
		s.labels = append(s.labels, l)
	}
	s.n += int(count)
	return nil
}

func cifarReadErr(name string, err error, record int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf(ErrFormat, name, "truncated at record %d (the file shrank while being read)", record)
	}
	return wrapf(ErrFormat, err, name, "cannot read record %d: %v", record, unwrapPathErr(err))
}

// loadCIFAR reads a split from its batch files, in the order given.
func loadCIFAR(paths []string, kind cifarKind) (*cifarSplit, error) {
	s := &cifarSplit{}
	for _, p := range paths {
		f, size, err := openSized(p)
		if err != nil {
			return nil, err
		}
		err = readCIFAR(f, size, kind, p, s)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// readNames reads class names, one per line, ignoring blank lines. It returns
// nil when the file is missing, unreadable, or does not hold want names.
func readNames(path string, want int) []string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 1<<20 {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	if len(names) != want {
		return nil
	}
	return names
}
