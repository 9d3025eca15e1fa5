package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mcpgate/mcpgate/translator"
)

// DebounceDelay is how long Watch waits after the last change before it reloads, so that an
// editor's write-rename-chmod sequence gives one reload.
const DebounceDelay = 100 * time.Millisecond

// DebounceLimit is the longest Watch delays a reload while changes keep coming.
const DebounceLimit = time.Second

// ErrBlind is why Watch does not start: a document that does not load may be a policy whose
// targets do not read, and serving the rest would serve the routes it protects without it.
var ErrBlind = errors.New("not started: a document that does not load may be a policy, and the routes it protects cannot be told; fix it, or move its file out of the watched paths")

// Watch loads paths, calls fn with the result, and calls it again after every change to them
// (debounced by DebounceDelay, at most DebounceLimit) until ctx ends. It watches directories,
// not files, so editors that replace a file by renaming a new one over it are seen; for a file
// path it reacts to changes of that name only, for a directory to changes of the manifests in
// it (the names Load reads, not an editor's swap file or a log). fn gets what Load returns:
// the objects read even when err lists bad documents, with one difference: a file whose new
// content has errors keeps its last good content (the last it served that loaded without
// errors), so a bad edit loses nothing that was served; Sources.Kept then says so. A file that
// never loaded without errors has no last good content: what loads of its current content is
// served, and Sources.Kept says so too. Files whose content did not change are not decoded again.
// A file named in paths that disappears also keeps its last served content until it is back, and
// so do the files of a directory named in paths that disappears (removed or renamed) until the
// directory is back; a file removed from a named directory takes its objects with it. A file
// named in paths that is not a regular file (a pipe: the shell's -f <(cat extra.yaml)) is read
// once, at the first load, and keeps that content: a pipe gives its content once. Reading a
// pipe waits at most until ctx ends; a named pipe in a directory is not opened (see Load).
//
// Watch does not start (it returns an error wrapping ErrBlind) when the first load finds a
// document that does not load and may be a policy whose targets do not read (a YAML syntax error,
// a policy without a name): there is no last good version to serve instead, and the routes it
// protects would be served without it. Later, a new file with such a document is held back whole
// until it loads, and the changed files keep their served content meanwhile (the document may be
// a policy an edit moved out of one of them).
//
// fn returns the files, among Sources.Changed and Sources.Added, whose new content must not be
// served (the pipeline refuses what translating it adds): Watch calls fn again at once with
// those files at their last served content, or without the new ones (see Cache.HoldBack),
// until fn holds back nothing more. What fn
// got last is then the served content. Watch returns nil when ctx ends, or an error when the
// watch cannot be set up.
func Watch(ctx context.Context, paths []string, fn func(*translator.Resources, Sources, error) (holdBack []string)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %v: %w", paths, err)
	}
	defer w.Close()
	dirs := map[string]bool{}    // watched directories given as paths: changes of manifests count
	files := map[string]bool{}   // files given as paths: changes of these names count
	watched := map[string]bool{} // the directories of dirs and files, added to the watcher
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
	// A watched directory removed or renamed and made again (`rm -rf run`, then a copy) is a
	// new directory that the watcher does not follow: its parent is watched too, and the
	// directory is watched again when it appears. Without the parent (not readable), that
	// goes unnoticed.
	for dir := range watched {
		if parent := filepath.Dir(dir); parent != dir && !watched[parent] {
			_ = w.Add(parent)
		}
	}
	relevant := func(name string) bool {
		abs, err := filepath.Abs(name)
		if err != nil {
			return true
		}
		return files[abs] || watched[abs] || (dirs[filepath.Dir(abs)] && isManifest(filepath.Base(abs)))
	}
	rewatch := func(ev fsnotify.Event) {
		if abs, err := filepath.Abs(ev.Name); err == nil && watched[abs] && ev.Has(fsnotify.Create) {
			_ = w.Remove(abs) // the watch of the directory that was there, if the watcher still has it
			_ = w.Add(abs)
		}
	}
	cache := Cache{ctx: ctx}
	res, src, err := cache.Load(paths...)
	if len(cache.blind()) > 0 {
		return fmt.Errorf("%w\n%w: %s", err, ErrBlind, strings.Join(cache.blind(), ", "))
	}
	cache.holdBlind = true // for the next loads: the first has no file served to hold
	serve := func(res *translator.Resources, src Sources, err error) {
		for {
			hold := fn(res, src, err)
			if len(hold) == 0 {
				break
			}
			var held bool
			if res, src, err, held = cache.HoldBack(hold); !held {
				break
			}
		}
		cache.Commit()
	}
	serve(res, src, err)
	load := func() { serve(cache.Load(paths...)) }
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
			rewatch(ev)
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

// Cache reads manifests like Load, remembering per file the last content read and the last good
// content served, as Watch does between reloads: a file whose new content has errors keeps its
// last good content, if it has one. The zero Cache is ready to use.
type Cache struct {
	cat   *catalog
	files map[string]*cachedFile
	order []string // the files of the last Load, in Load's order
	errs  []error  // the errors of the last Load that are not one file's
	// skipped are the notes of the last Load on the files of the paths that it does not read
	skipped []string
	// ctx ends the reading of a pipe (Watch's); nil: context.Background()
	ctx context.Context
	// holdBlind holds back whole a new file that is blind (Watch's, once it started): a policy
	// it may hold would be missing from the rest of it
	holdBlind bool
	// chosenIn and servedIn say which file's definition of each object the last Load or
	// HoldBack returned and the last Commit served.
	chosenIn, servedIn map[translator.ObjectKey]string
}

type cachedFile struct {
	current *fileObjects // the file's content when last read
	// once: the file is not a regular file (a pipe named in paths): its content was read once and
	// is not read again, as a pipe gives its content once
	once bool
	// served is the last good content: the content at the last Commit that loaded without
	// errors; nil if there was none (a new file, or one that never loaded without errors)
	served *fileObjects
	chosen *fileObjects // the content the last Load or HoldBack returned
	// conflicts are the objects of current that other files serve (see settleConflicts)
	conflicts []error
}

// Load reads the manifests at paths (files or directories) like the package's Load, reusing the
// decoded objects of files whose content is unchanged since the last call and keeping the last
// good content of files whose new content has errors.
func (c *Cache) Load(paths ...string) (*translator.Resources, Sources, error) {
	if c.files == nil {
		c.cat, c.files = newCatalog(), map[string]*cachedFile{}
	}
	// a file named in paths that disappears (an editor deleting and writing it anew, a
	// mistake) keeps its served content like a file with errors, and so do the files of a
	// directory named in paths that disappears; a file removed from a directory takes its
	// objects with it
	l, err := expand(paths, c.previous)
	c.order, c.errs, c.skipped = l.files, []error{err}, l.skipped
	seen := make(map[string]bool, len(l.files))
	blindHeld := false
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	for _, name := range l.files {
		seen[name] = true
		cf := c.files[name]
		if cf == nil {
			cf = &cachedFile{}
			c.files[name] = cf
		}
		if !cf.once || cf.current == nil || isRegular(name) {
			data, once, err := readFile(ctx, name, l.named[name])
			cf.once = once
			switch {
			case err != nil:
				cf.current = &fileObjects{name: name, errs: []error{err}}
			case cf.current == nil || cf.current.data == nil || !bytes.Equal(cf.current.data, data):
				cf.current = parseFile(name, data, c.cat)
			}
		}
		cf.chosen = cf.current
		switch {
		case len(cf.current.errs) > 0 && cf.served != nil:
			cf.chosen = cf.served
		case cf.current.blind && cf.served == nil && c.holdBlind:
			cf.chosen = &fileObjects{name: name, withheld: true}
			blindHeld = true
		}
	}
	if blindHeld {
		// the policy a held back file may hold may be one an edit moved out of a served file:
		// the changed files keep their served content too, until it loads
		for _, name := range l.files {
			if cf := c.files[name]; cf.served != nil {
				cf.chosen = cf.served
			}
		}
	}
	for name := range c.files {
		if !seen[name] {
			delete(c.files, name) // a removed file: its objects go
		}
	}
	c.settleConflicts()
	return c.merged()
}

// settleConflicts gives back its served content to a changed file whose new content defines an
// object that another file serves and still defines: the served definition stays. (An object
// moved from one file to another in one change moves; a new file's definition of a served object
// is dropped by merge.)
func (c *Cache) settleConflicts() {
	stillIn := map[translator.ObjectKey]bool{} // objects still defined by the file serving them
	for _, name := range c.order {
		for _, o := range c.files[name].chosen.objects {
			if c.servedIn[o.key] == name {
				stillIn[o.key] = true
			}
		}
	}
	for _, name := range c.order {
		cf := c.files[name]
		cf.conflicts = nil
		if cf.chosen == cf.served || cf.served == nil {
			continue
		}
		for _, o := range cf.chosen.objects {
			if in := c.servedIn[o.key]; in != name && stillIn[o.key] {
				cf.conflicts = append(cf.conflicts, &Error{Location: o.loc, Object: o.key,
					Message: "defined again; the definition in " + in + " is served"})
			}
		}
		if len(cf.conflicts) > 0 {
			cf.chosen = cf.served
		}
	}
}

// blind lists the files of the last Load (in order) whose content has a document that does not
// load and may be a policy whose targets do not read (decoder.failClosed).
func (c *Cache) blind() []string {
	var out []string
	for _, name := range c.order {
		if c.files[name].current.blind {
			out = append(out, name)
		}
	}
	return out
}

// isRegular reports whether name is a regular file now.
func isRegular(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// previous lists the files of the last Load that path named: the file itself, or the files
// directly in the directory.
func (c *Cache) previous(path string) []string {
	if c.files[path] != nil {
		return []string{path}
	}
	var out []string
	for _, name := range c.order {
		if filepath.Dir(name) == filepath.Clean(path) {
			out = append(out, name)
		}
	}
	return out
}

// HoldBack returns the last Load's objects again, with the named files (those of
// Sources.Changed) at their served content instead of their new one, and the named files that
// have no served content (those of Sources.Added) left out whole until a later Load: nothing of
// them is served, and Commit does not make that their served content. held reports whether any
// file was held back (false: the names were not files of the last Load not yet held back).
func (c *Cache) HoldBack(names []string) (res *translator.Resources, src Sources, err error, held bool) {
	for _, name := range names {
		switch cf := c.files[name]; {
		case cf == nil || cf.chosen == cf.served || cf.chosen.withheld:
		case cf.served != nil:
			cf.chosen, held = cf.served, true
		default:
			cf.chosen, held = &fileObjects{name: name, withheld: true}, true
		}
	}
	res, src, err = c.merged()
	return res, src, err, held
}

// Commit records the content the last Load or HoldBack returned as the served content: as the
// last good content of each file whose content loaded without errors.
func (c *Cache) Commit() {
	for _, cf := range c.files {
		if len(cf.chosen.errs) == 0 && !cf.chosen.withheld {
			cf.served = cf.chosen
		}
	}
	c.servedIn = c.chosenIn
}

// merged joins the chosen content of the files of the last Load.
func (c *Cache) merged() (*translator.Resources, Sources, error) {
	errs := slices.Clone(c.errs)
	parsed := make([]*fileObjects, 0, len(c.order))
	var changed, added, kept []string
	for _, name := range c.order {
		cf := c.files[name]
		switch {
		case cf.chosen.withheld: // a new file held back (HoldBack)
			errs = append(errs, cf.current.errs...)
			kept = append(kept, name+": nothing of it is served: it is new and its content was refused")
		case cf.chosen != cf.current && len(cf.current.errs) > 0:
			errs = append(errs, cf.current.errs...)
			kept = append(kept, name+": serving its last good version until its errors are fixed")
		case cf.chosen != cf.current && len(cf.conflicts) > 0:
			errs = append(errs, cf.conflicts...)
			kept = append(kept, name+": serving its last good version: its new content defines objects that other files serve")
		case cf.chosen != cf.current: // held back (HoldBack)
			kept = append(kept, name+": serving its last good version: its new content was refused")
		case cf.served == nil:
			added = append(added, name)
			switch {
			case len(cf.chosen.errs) == 0:
			case len(cf.chosen.objects) == 0:
				kept = append(kept, name+": nothing of it is served until its errors are fixed: it has no last good version")
			default:
				kept = append(kept, name+": only its objects that load are served until its errors are fixed: it has no last good version")
			}
		case cf.chosen != cf.served:
			changed = append(changed, name)
		}
		parsed = append(parsed, cf.chosen)
	}
	res, src, err := merge(parsed, func(k translator.ObjectKey) string { return c.servedIn[k] })
	c.chosenIn = make(map[translator.ObjectKey]string, len(src.objects))
	for k, loc := range src.objects {
		c.chosenIn[k] = loc.File
	}
	src.Changed, src.Added, src.Kept = changed, added, kept
	src.Warnings = append(slices.Clone(c.skipped), src.Warnings...)
	return res, src, errors.Join(append(errs, err)...)
}
