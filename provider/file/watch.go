package file

import (
	"bytes"
	"context"
	"errors"
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

// DebounceLimit is the longest Watch delays a reload while changes keep coming.
const DebounceLimit = time.Second

// Watch loads paths, calls fn with the result, and calls it again after every change to them
// (debounced by DebounceDelay, at most DebounceLimit) until ctx ends. It watches directories,
// not files, so editors that replace a file by renaming a new one over it are seen; for a file
// path it reacts to changes of that name only, for a directory to changes of the manifests in
// it (the names Load reads, not an editor's swap file or a log). fn gets what Load returns:
// the objects read even when err lists bad documents, with one difference: a file whose new
// content has errors keeps its last good content (the last one read without errors), so a bad
// edit loses nothing that was served; err then says so. Files whose content did not change are
// not decoded again. A file named in paths that disappears also keeps its last good content
// until it is back; a file removed from a named directory takes its objects with it. Watch
// returns nil when ctx ends, or an error when the watch cannot be set up.
func Watch(ctx context.Context, paths []string, fn func(*translator.Resources, Sources, error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %v: %w", paths, err)
	}
	defer w.Close()
	dirs := map[string]bool{}    // watched directories given as paths: changes of manifests count
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
		return files[abs] || dirs[abs] || (dirs[filepath.Dir(abs)] && isManifest(filepath.Base(abs)))
	}
	var cache Cache
	load := func() {
		res, src, err := cache.Load(paths...)
		fn(res, src, err)
	}
	load()
	timer := time.NewTimer(DebounceDelay)
	timer.Stop()
	var pending time.Time // when the first change since the last reload came
	schedule := func() {
		now := time.Now()
		if pending.IsZero() {
			pending = now
		}
		timer.Reset(max(0, min(DebounceDelay, pending.Add(DebounceLimit).Sub(now))))
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
				schedule()
			}
		case _, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("watch %v: the watcher closed", paths)
			}
			// an overflow or similar: events may be lost, so reload to be sure
			schedule()
		case <-timer.C:
			pending = time.Time{}
			load()
		}
	}
}

// Cache reads manifests like Load, remembering per file the last content read and the last
// content read without errors, as Watch does between reloads. The zero Cache is ready to use.
type Cache struct {
	files map[string]*cachedFile
}

type cachedFile struct {
	current *fileObjects // the file's content when last read
	good    *fileObjects // the last content without errors; nil if there was none
}

// Load reads the manifests at paths (files or directories) like the package's Load, reusing the
// decoded objects of files whose content is unchanged since the last call and keeping the last
// good content of files whose new content has errors.
func (c *Cache) Load(paths ...string) (*translator.Resources, Sources, error) {
	if c.files == nil {
		c.files = map[string]*cachedFile{}
	}
	// a file named in paths that disappears (an editor deleting and writing it anew, a
	// mistake) keeps its last good content like a file with errors; a file removed from a
	// directory takes its objects with it
	names, err := expand(paths, func(p string) bool { return c.files[p] != nil })
	errs := []error{err}
	parsed := make([]*fileObjects, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		seen[name] = true
		cf := c.files[name]
		if cf == nil {
			cf = &cachedFile{}
			c.files[name] = cf
		}
		data, err := os.ReadFile(name)
		switch {
		case err != nil:
			cf.current = &fileObjects{name: name, errs: []error{fmt.Errorf("%s: %w", name, err)}}
		case cf.current == nil || cf.current.data == nil || !bytes.Equal(cf.current.data, data):
			cf.current = parseFile(name, data)
		}
		if len(cf.current.errs) == 0 {
			cf.good = cf.current
		}
		if len(cf.current.errs) > 0 && cf.good != nil {
			errs = append(errs, cf.current.errs...)
			errs = append(errs, fmt.Errorf("%s: serving its last good version until the errors above are fixed", name))
			parsed = append(parsed, cf.good)
			continue
		}
		parsed = append(parsed, cf.current)
	}
	for name := range c.files {
		if !seen[name] {
			delete(c.files, name) // a removed file: its objects go
		}
	}
	res, src, err := merge(parsed)
	return res, src, errors.Join(append(errs, err)...)
}
