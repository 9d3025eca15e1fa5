package syncbuf_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/syncbuf"
)

// TestConcurrentWriters: lines written from many goroutines all arrive whole (run with -race).
func TestConcurrentWriters(t *testing.T) {
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { fmt.Fprintf(&b, "line %02d\n", i) })
	}
	wg.Wait()
	got := b.Lines()
	slices.Sort(got)
	if len(got) != 50 || got[0] != "line 00" || got[49] != "line 49" {
		t.Errorf("lines %q", got)
	}
	if b.String()[len(b.String())-1] != '\n' {
		t.Errorf("String lost the last newline: %q", b.String())
	}
}
