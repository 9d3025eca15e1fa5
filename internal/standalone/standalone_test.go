package standalone

import (
	"os"
	"testing"
)

// TestRunSocketDir: the run makes the folder of the mux upstream sockets for supervised Envoys
// only and removes it; without them the folder is os.TempDir(), `mcpgate bootstrap`'s default.
func TestRunSocketDir(t *testing.T) {
	dir, remove, err := runSocketDir(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("socket folder: %v", err)
	}
	remove()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket folder %s not removed: %v", dir, err)
	}
	if dir, _, err := runSocketDir(false); dir != "" || err != nil {
		t.Errorf("without supervised Envoys: folder %q, %v; want \"\" (os.TempDir(), mcpgate bootstrap's default)", dir, err)
	}
}
