package bench

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/internal/app"
)

// largeModel is the model HYPERAT_LARGE names (bench/large_models.py makes
// torchvision's ViT-L/16 and ViT-H/14); without it the benchmark skips.
func largeModel(b *testing.B) string {
	p := os.Getenv("HYPERAT_LARGE")
	if p == "" {
		b.Skip("HYPERAT_LARGE is not set (bench/large_models.py OUT_DIR makes the models)")
	}
	return p
}

// hyperat-import of a large model into a new workspace: reading, checking
// and running it once, and the workspace's copy. Peak memory is measured
// on the command itself (bench/large.sh, /usr/bin/time -v); -memprofile
// shows where the bytes are allocated.
func BenchmarkImportLarge(b *testing.B) {
	path := largeModel(b)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	for i := 0; i < b.N; i++ {
		ws := filepath.Join(b.TempDir(), "ws")
		c := app.ImportCommand()
		c.Stdout = io.Discard
		if err := app.Import(c, []string{path, "--workspace", ws}); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(ws)
	}
}
