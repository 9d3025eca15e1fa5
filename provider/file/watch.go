package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mcpgate/mcpgate/translator"
)

// DebounceDelay is how long Watch waits after the last change before it reloads, so that an
// editor's write-rename-chmod sequence gives one reload.
const DebounceDelay = 100 * time.Millisecond

// Watch loads paths, calls fn with the result, and calls it again after every change to them
// (debounced by DebounceDelay) until ctx ends. It watches directories, not files, so editors
// that replace a file by renaming a new one over it are seen; for a file path it reacts to
// changes of that name only, for a directory to any change in it. fn gets what Load returns:
// the objects read even when err lists bad documents. Watch returns nil when ctx ends, or an
// error when the watch cannot be set up.
func Watch(ctx context.Context, paths []string, fn func(*translator.Resources, Sources, error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %v: %w", paths, err)
	}
	defer w.Close()
	dirs := map[string]bool{}    // watched directories given as paths: any change counts
	files := map[string]bool{}   // files given as paths: changes of these names count
	watched := map[string]bool{} // directories added to the watcher
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		dir := abs
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			dirs[abs] = true
		} else {
			files[abs] = true
			dir = filepath.Dir(abs)
		}
		if !watched[dir] {
			if err := w.Add(dir); err != nil {
				return fmt.Errorf("watch %s: %w", dir, err)
			}
			watched[dir] = true
		}
	}
	relevant := func(name string) bool {
		abs, err := filepath.Abs(name)
		if err != nil {
			return true
		}
		return files[abs] || dirs[filepath.Dir(abs)] || dirs[abs]
	}
	load := func() {
		res, src, err := Load(paths...)
		fn(res, src, err)
	}
	load()
	timer := time.NewTimer(DebounceDelay)
	if !timer.Stop() {
		<-timer.C
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("watch %v: the watcher closed", paths)
			}
			if relevant(ev.Name) {
				timer.Reset(DebounceDelay)
			}
		case _, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("watch %v: the watcher closed", paths)
			}
			// an overflow or similar: events may be lost, so reload to be sure
			timer.Reset(DebounceDelay)
		case <-timer.C:
			load()
		}
	}
}
