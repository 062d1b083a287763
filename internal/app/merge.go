package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/internal/cli"
)

// shardFile is a shard's report as read back.
type shardFile struct {
	robustReport
	Images []attack.Record `json:"images"`
	path   string
}

// evalMerge is hyperat-eval merge: the shards' reports of one evaluation
// put together into the report a single run of it gives.
func evalMerge(c *cli.Command, args []string, jsonPath *string) error {
	paths, err := c.Parse(args)
	if err != nil {
		return err
	}
	var other []string
	for _, f := range c.Changed() {
		if f != "json" {
			other = append(other, "--"+f)
		}
	}
	switch {
	case len(other) > 0:
		return cli.Usagef("merge takes the shards' reports and --json, not %s", strings.Join(other, ", "))
	case len(paths) == 0:
		return cli.Usagef("merge: give the reports of the shards (hyperat-eval --shard I/N --json FILE)")
	case *jsonPath != "" && slices.ContainsFunc(paths, func(p string) bool { return sameFile(p, *jsonPath) }):
		return cli.Usagef("merge: --json %s is one of the shards' reports", *jsonPath)
	}
	shards := make([]*shardFile, len(paths))
	for k, p := range paths {
		if shards[k], err = readShard(p); err != nil {
			return err
		}
	}
	rep, err := mergeShards(shards)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "merged  %d shards (%s): %d images\n", len(shards), shards[0].Shard.Mode, rep.N)
	rep.print(c.Stdout)
	if *jsonPath == "" {
		return nil
	}
	b, err := rep.encode()
	if err != nil {
		return err
	}
	return fsx.WriteFile(*jsonPath, b)
}

// readShard reads a shard's report.
func readShard(path string) (*shardFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, bareErr(err))
	}
	s := &shardFile{path: path}
	if err := json.Unmarshal(b, s); err != nil || s.Tool != "hyperat-eval" || s.ModelSHA256 == "" {
		return nil, fmt.Errorf("%s: not a report of hyperat-eval --json", path)
	}
	if s.Shard == nil {
		return nil, fmt.Errorf("%s: the report of a whole evaluation (made without --shard), not of a shard", path)
	}
	if sh := s.Shard; sh.Count < 1 || sh.Index < 0 || sh.Index >= sh.Count || s.Batch < 1 || s.N != len(s.Images) {
		return nil, fmt.Errorf("%s: damaged report (shard %d/%d, batch %d, %d images, %d records)", path, sh.Index, sh.Count, s.Batch, s.N, len(s.Images))
	}
	return s, nil
}

// mergeShards checks that the shards are all those of one evaluation, each
// once, with the images each should have, and builds the report of the
// whole evaluation from their records, in the list's order.
func mergeShards(shards []*shardFile) (*robustReport, error) {
	first := shards[0]
	count := first.Shard.Count
	byIndex := make([]*shardFile, count)
	for _, s := range shards {
		if why := s.differs(first); why != "" {
			return nil, fmt.Errorf("%s is not a shard of the evaluation of %s: %s", s.path, first.path, why)
		}
		if d := byIndex[s.Shard.Index]; d != nil {
			return nil, fmt.Errorf("%s and %s are both shard %d/%d", d.path, s.path, s.Shard.Index, count)
		}
		byIndex[s.Shard.Index] = s
	}
	var missing []string
	for i, s := range byIndex {
		if s == nil {
			missing = append(missing, fmt.Sprint(i))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%d of the %d shards missing: %s (shards are numbered from 0)", len(missing), count, strings.Join(missing, ", "))
	}
	recs := make([]attack.Record, first.Shard.List)
	var checks []string
	for _, s := range byIndex {
		if err := s.place(recs); err != nil {
			return nil, err
		}
		for _, w := range s.Shard.Checks {
			if !slices.Contains(checks, w) {
				checks = append(checks, w)
			}
		}
	}
	rep := byIndex[0].robustReport // its settings (the data's path, the model's name), whatever the order given
	rep.Shard = nil
	rep.total(checks, recs)
	return &rep, nil
}

// differs names the first setting in which s differs from the shard o, or "".
func (s *shardFile) differs(o *shardFile) string {
	short := func(h string) string { return h[:min(len(h), 12)] }
	switch {
	case s.ModelSHA256 != o.ModelSHA256:
		return fmt.Sprintf("another model (sha256 %s, there %s)", short(s.ModelSHA256), short(o.ModelSHA256))
	case s.Shard.List != o.Shard.List:
		return fmt.Sprintf("a list of %d images (there %d: another --limit or data)", s.Shard.List, o.Shard.List)
	case s.ImagesSHA256 != o.ImagesSHA256:
		return "other images or labels"
	case s.Eps != o.Eps || s.Norm != o.Norm:
		return fmt.Sprintf("eps %v %s (there %v %s)", s.Eps, s.Norm, o.Eps, o.Norm)
	case !slices.Equal(s.Attacks, o.Attacks):
		return fmt.Sprintf("the attacks %s (there %s)", strings.Join(s.Attacks, ","), strings.Join(o.Attacks, ","))
	case s.Seed != o.Seed:
		return fmt.Sprintf("seed %d (there %d)", s.Seed, o.Seed)
	case s.Batch != o.Batch:
		return fmt.Sprintf("--batch %d (there %d)", s.Batch, o.Batch)
	case s.Shard.Count != o.Shard.Count || s.Shard.Mode != o.Shard.Mode:
		return fmt.Sprintf("one of %d %s shards (there %d %s)", s.Shard.Count, s.Shard.Mode, o.Shard.Count, o.Shard.Mode)
	case s.Split != o.Split:
		return fmt.Sprintf("the %s split (there %s)", s.Split, o.Split)
	case s.Version != o.Version:
		return fmt.Sprintf("hyperat-eval %s (there %s)", s.Version, o.Version)
	case s.Kernels != o.Kernels:
		return fmt.Sprintf("computed by the kernels %s (there %s), which do not agree bit for bit", s.Kernels, o.Kernels)
	}
	return ""
}

// place puts the shard's records where they belong in the list's records,
// after checking that they are those of its images, each with a result
// under every attack.
func (s *shardFile) place(recs []attack.Record) error {
	pos, err := s.Shard.shardSpec.positions(len(recs), s.Batch)
	if err != nil {
		return fmt.Errorf("%s: damaged report: %v", s.path, err)
	}
	if len(pos) != len(s.Images) {
		return fmt.Errorf("%s: damaged report: %d images, shard %d/%d of %d images in batches of %d has %d",
			s.path, len(s.Images), s.Shard.Index, s.Shard.Count, len(recs), s.Batch, len(pos))
	}
	for k, p := range pos {
		rec := s.Images[k]
		// the list is the first images of the split: image p is at place p
		if rec.Index != p {
			return fmt.Errorf("%s: damaged report: record %d is of image %d, want %d", s.path, k, rec.Index, p)
		}
		for _, a := range s.Attacks {
			if _, ok := rec.Robust[a]; !ok {
				return fmt.Errorf("%s: damaged report: image %d has no result under %s", s.path, p, a)
			}
		}
		recs[p] = rec
	}
	return nil
}

// sameFile says whether two paths name one file (the same path, or the same
// existing file).
func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
