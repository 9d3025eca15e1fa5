// Package file reads the translator's input from YAML manifests on disk and watches them.
//
// Load reads files and directories (the *.yaml and *.yml files directly in a directory, not
// below it, that are regular files: a named pipe there is skipped), each file once and at most
// MaxFileBytes, each possibly holding several documents separated by "---", and decodes the kinds
// the translator knows strictly: an unknown or duplicate field is an error naming the file, the
// document, the object and the field. Kinds mcpgate does not read (a Deployment next to its
// Service) are skipped with a warning; a kind or apiVersion that is a mistake (a typo in a
// policy's kind) is an error (see catalog). Objects without a namespace get "default", as kubectl would give them.
// An error in one document loses nothing else: every good object is still returned.
package file

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/api/v1alpha1/enterprise"
	"github.com/mcpgate/mcpgate/translator"
)

// ReadsWhat says which files Load reads, for messages.
const ReadsWhat = "the files named and the *.yaml and *.yml files directly in the directories named, not in their subdirectories"

// DefaultNamespace is the namespace of objects that name none.
const DefaultNamespace = "default"

// Location is where an object was read: a file and the 1-based index of its document.
type Location struct {
	// File is the file's path as named, or joined to the directory named.
	File string
	// Document is the 1-based index of the YAML document in the file (the items of a List
	// share their List's).
	Document int
	// Digest is the SHA-256 of the document's text: two reads of an object with the same
	// digest read the same text (the items of a List share their List's).
	Digest [sha256.Size]byte
}

// String renders the location as "FILE (document N)".
func (l Location) String() string { return fmt.Sprintf("%s (document %d)", l.File, l.Document) }

// Sources says where each loaded object came from, and what Load skipped.
type Sources struct {
	objects map[translator.ObjectKey]Location
	// Warnings are the documents skipped because their kind is not one mcpgate reads, and the
	// files of the paths skipped: a file of a directory that is not a regular file, a file named
	// twice.
	Warnings []string
	// Changed are the files (of a Cache.Load) whose content is new since the served one and
	// that have a served content to go back to (see Cache.HoldBack). New files are not in it.
	Changed []string
	// Added are the files (of a Cache.Load) that have no served content yet (and are not held
	// back: see Cache.HoldBack).
	Added []string
	// Kept says which files serve their last good content instead of their new one, and why:
	// "FILE: serving its last good version ..."; and which files with errors have no last good
	// content, so that only what loads of their new one is served: "FILE: nothing of it is
	// served ..." or "FILE: only its objects that load are served ..."; and which new files are
	// held back whole: "FILE: nothing of it is served: it is new ...". They are notes, not
	// problems: the problems are the errors Load returns.
	Kept []string
}

// Of returns where the object k was read.
func (s Sources) Of(k translator.ObjectKey) (Location, bool) {
	l, ok := s.objects[k]
	return l, ok
}

// Objects returns the objects read (skipped documents and documents with errors aside) and
// where each was read; the map is the caller's.
func (s Sources) Objects() map[translator.ObjectKey]Location { return maps.Clone(s.objects) }

// Describe renders a translator refusal as "FILE: Kind ns/name: field: message" (without the
// file when the object was not read from one).
func (s Sources) Describe(e translator.FieldError) string {
	if l, ok := s.objects[e.Object()]; ok {
		return l.File + ": " + e.Error()
	}
	return e.Error()
}

// Error is one document that could not be (fully) read.
type Error struct {
	Location
	Object translator.ObjectKey // zero when the document's kind or name is unknown
	// Field is the path of the field at fault (e.g. metadata.name); "" for the whole document.
	Field string
	// Message says what is wrong.
	Message string
}

// Error renders "FILE: document N: Kind ns/name: field: message".
func (e *Error) Error() string {
	s := fmt.Sprintf("%s: document %d", e.File, e.Document)
	if e.Object.Kind != "" {
		s += ": " + strings.TrimSuffix(e.Object.String(), " ") // a kind without namespace and name: "Service"
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Message
}

// kindInfo says how to decode and store one kind.
type kindInfo struct {
	namespaced bool
	// decode returns the unknown and duplicate fields, or a *fieldError
	decode func(doc []byte, ns string, res *translator.Resources) ([]error, error)
}

// fieldError is a document that does not decode: a field (or "") and what is wrong.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// decodeInto strictly decodes doc into a new T, sets its namespace to ns, and appends it with
// add.
func decodeInto[T any, P interface {
	*T
	metav1.Object
}](add func(res *translator.Resources, p P)) func([]byte, string, *translator.Resources) ([]error, error) {
	return func(doc []byte, ns string, res *translator.Resources) ([]error, error) {
		p := P(new(T))
		strict, err := kjson.UnmarshalStrict(doc, p)
		if err != nil {
			field, msg := decodeError(doc, err, new(T))
			return nil, &fieldError{field, msg}
		}
		p.SetNamespace(ns)
		add(res, p)
		return strict, nil
	}
}

// readKinds returns the kinds mcpgate reads, by "apiVersion/Kind".
func readKinds() map[string]kindInfo {
	gw := func(res *translator.Resources, p *gwv1.Gateway) { res.Gateways = append(res.Gateways, p) }
	gwc := func(res *translator.Resources, p *gwv1.GatewayClass) {
		res.GatewayClasses = append(res.GatewayClasses, p)
	}
	rt := func(res *translator.Resources, p *gwv1.HTTPRoute) { res.HTTPRoutes = append(res.HTTPRoutes, p) }
	grant := func(res *translator.Resources, p *gwv1.ReferenceGrant) {
		res.ReferenceGrants = append(res.ReferenceGrants, p)
	}
	m := map[string]kindInfo{
		"agentgateway.dev/v1alpha1/AgentgatewayBackend": {true, decodeInto(func(res *translator.Resources, p *v1alpha1.AgentgatewayBackend) {
			res.Backends = append(res.Backends, p)
		})},
		"agentgateway.dev/v1alpha1/AgentgatewayPolicy": {true, decodeInto(func(res *translator.Resources, p *v1alpha1.AgentgatewayPolicy) {
			res.Policies = append(res.Policies, p)
		})},
		"enterpriseagentgateway.solo.io/v1alpha1/EnterpriseAgentgatewayPolicy": {true, decodeInto(func(res *translator.Resources, p *enterprise.EnterpriseAgentgatewayPolicy) {
			res.Policies = append(res.Policies, p.AsAgentgatewayPolicy())
		})},
		"v1/Service": {true, decodeInto(func(res *translator.Resources, p *corev1.Service) { res.Services = append(res.Services, p) })},
		"v1/Secret": {true, decodeInto(func(res *translator.Resources, p *corev1.Secret) {
			// as the API server does: stringData is merged into data
			for k, v := range p.StringData {
				if p.Data == nil {
					p.Data = map[string][]byte{}
				}
				p.Data[k] = []byte(v)
			}
			p.StringData = nil
			res.Secrets = append(res.Secrets, p)
		})},
		"v1/ConfigMap": {true, decodeInto(func(res *translator.Resources, p *corev1.ConfigMap) {
			res.ConfigMaps = append(res.ConfigMaps, p)
		})},
		"v1/Namespace": {false, decodeInto(func(res *translator.Resources, p *corev1.Namespace) { res.Namespaces = append(res.Namespaces, p) })},
		"discovery.k8s.io/v1/EndpointSlice": {true, decodeInto(func(res *translator.Resources, p *discoveryv1.EndpointSlice) {
			res.EndpointSlices = append(res.EndpointSlices, p)
		})},
	}
	btls := func(res *translator.Resources, p *gwv1.BackendTLSPolicy) {
		res.BackendTLSPolicies = append(res.BackendTLSPolicies, p)
	}
	// BackendTLSPolicy is served in v1 (standard channel) and, deprecated, v1alpha3: the same
	// type (gwv1alpha3.BackendTLSPolicy is gwv1.BackendTLSPolicy)
	m["gateway.networking.k8s.io/v1/BackendTLSPolicy"] = kindInfo{true, decodeInto(btls)}
	m["gateway.networking.k8s.io/v1alpha3/BackendTLSPolicy"] = kindInfo{true, decodeInto(btls)}
	for _, v := range []string{"v1", "v1beta1"} {
		m["gateway.networking.k8s.io/"+v+"/GatewayClass"] = kindInfo{false, decodeInto(gwc)}
		m["gateway.networking.k8s.io/"+v+"/Gateway"] = kindInfo{true, decodeInto(gw)}
		m["gateway.networking.k8s.io/"+v+"/HTTPRoute"] = kindInfo{true, decodeInto(rt)}
		m["gateway.networking.k8s.io/"+v+"/ReferenceGrant"] = kindInfo{true, decodeInto(grant)}
	}
	return m
}

// Load reads the manifests at paths (files or directories). It returns every object it could
// read, where each came from, and an error joining one *Error per bad document or object. It is
// a first Cache.Load: nothing read before to fall back on.
func Load(paths ...string) (*translator.Resources, Sources, error) {
	var c Cache
	return c.Load(paths...)
}

// MaxFileBytes is the most a manifest file may hold (16 MiB): a larger one is refused with an
// error naming it and the limit, and not read further, so that a mistake (-f /dev/zero, a log
// named *.yaml) cannot exhaust memory. Under Watch it keeps its last good version, as a file
// with errors does.
const MaxFileBytes = 16 << 20

// listing is the files of paths that Load reads.
type listing struct {
	// files are the files as named or joined to their directory, each file once
	files []string
	// named are the files (of files) named in paths themselves, not found in a directory
	named map[string]bool
	// skipped say which files were left out and why: "FILE: not a regular file ..."
	skipped []string
}

// expand lists the files of paths: files as given, directories' *.yaml and *.yml in name order,
// of those only the regular files (and links to regular files): a named pipe or a device in a
// directory is skipped, never opened (reading it could block or never end). A file named twice
// (a file named and found in a directory named, or through a link) is listed once, where it comes
// first. A path that cannot be stat'ed is an error, unless previous lists files read from it
// before (the file itself, or the files of a directory): then those are listed, and reading them
// says what is wrong.
func expand(paths []string, previous func(string) []string) (listing, error) {
	l := listing{named: map[string]bool{}}
	var errs []error
	first := map[string]string{} // the files listed, by identity: the name they were listed as
	add := func(name string, named bool) {
		id := identity(name)
		if f, dup := first[id]; dup {
			if f != name {
				l.skipped = append(l.skipped, name+": the same file as "+f+", which is read once")
			}
			return
		}
		first[id] = name
		l.files = append(l.files, name)
		if named {
			l.named[name] = true
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			var before []string
			if previous != nil {
				before = previous(p)
			}
			if len(before) == 0 {
				errs = append(errs, pathError(p, err))
			}
			for _, name := range before {
				add(name, name == p)
			}
			continue
		}
		if !fi.IsDir() {
			add(p, true)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, pathError(p, err))
			continue
		}
		var names []string
		for _, e := range entries {
			if e.IsDir() || !isManifest(e.Name()) {
				continue
			}
			name := filepath.Join(p, e.Name())
			mode := e.Type()
			if mode&os.ModeSymlink != 0 {
				if fi, err := os.Stat(name); err == nil { // else reading it says what is wrong
					mode = fi.Mode()
				}
			}
			if what := notRegular(mode); what != "" {
				l.skipped = append(l.skipped, name+": "+what+": only regular files are read in a directory")
				continue
			}
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			add(name, false)
		}
	}
	return l, errors.Join(errs...)
}

// identity returns what tells one file from another: its absolute path with links resolved
// (its absolute or given path when that fails).
func identity(name string) string {
	abs, err := filepath.Abs(name)
	if err != nil {
		return name
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// notRegular describes a file of mode that is not a regular file ("a named pipe"); "" for a
// regular file or a link.
func notRegular(mode os.FileMode) string {
	switch {
	case mode.IsRegular() || mode&os.ModeSymlink != 0:
		return ""
	case mode.IsDir():
		return "a directory"
	case mode&os.ModeNamedPipe != 0:
		return "not a regular file (a named pipe)"
	case mode&os.ModeSocket != 0:
		return "not a regular file (a socket)"
	case mode&os.ModeDevice != 0:
		return "not a regular file (a device)"
	}
	return "not a regular file"
}

// readFile reads the manifest file name, refusing one larger than MaxFileBytes. It never blocks
// opening the file, and reads a regular file to its end. A file that is not regular (a pipe from
// the shell's -f <(...), a device) is read only when named in the paths (named): to the end of
// what its writers write, or until ctx ends; once reports that it was such a file, which cannot
// be read again (a pipe drained). A file of a directory that is not regular (any more) is an
// error: it is not read.
func readFile(ctx context.Context, name string, named bool) (data []byte, once bool, err error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	var r io.Reader = f
	switch what := notRegular(fi.Mode()); {
	case what == "":
		if fi.Size() > MaxFileBytes {
			return nil, false, tooLarge(name)
		}
	case named && !fi.IsDir():
		once = true
		// reading a pipe waits for its writers: ctx ends the wait (a deadline in the past;
		// a device that cannot have one does not wait)
		stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	case fi.IsDir():
		return nil, false, fmt.Errorf("%s: a directory: not read", name)
	default:
		return nil, false, fmt.Errorf("%s: %s: only regular files are read in a directory", name, what)
	}
	data, err = io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, once, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > MaxFileBytes {
		return nil, once, tooLarge(name)
	}
	return data, once, nil
}

func tooLarge(name string) error {
	return fmt.Errorf("%s: larger than the %d MiB a manifest file may hold (MaxFileBytes): not read", name, MaxFileBytes>>20)
}

func isManifest(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
}

// fileObjects is what one file holds: its objects in document order, the documents skipped
// for their kind, and the documents or objects that could not be read.
type fileObjects struct {
	name string
	data []byte // the content the objects were read from; nil when the file could not be read
	// withheld: this is no content of the file but a new file held back whole (Cache.HoldBack)
	withheld bool
	// blind: a document of it that does not load may be a policy whose targets do not read
	// (decoder.failClosed)
	blind    bool
	objects  []object
	warnings []string
	errs     []error
}

// object is one decoded object and where it was read.
type object struct {
	key   translator.ObjectKey
	loc   Location
	value *translator.Resources // holds exactly this one object
}

// parseFile decodes the documents of one file's content.
func parseFile(name string, data []byte, cat *catalog) *fileObjects {
	f := &fileObjects{name: name, data: data}
	d := decoder{cat: cat, file: f}
	for i, doc := range splitDocuments(data) {
		loc := Location{File: name, Document: i + 1, Digest: sha256.Sum256(doc.data)}
		if doc.err != "" {
			d.fail(loc, translator.ObjectKey{}, "", doc.err)
			continue
		}
		d.loadDocument(loc, doc)
	}
	return f
}

// document is one YAML document of a file and the file line it starts on.
type document struct {
	line int
	data []byte
	// err says why the document is not read: it starts with a separator line that kubectl
	// refuses ("--- x"), so where it starts is not known
	err string
}

// splitDocuments splits a file's content into YAML documents as kubectl does
// (k8s.io/apimachinery/pkg/util/yaml.YAMLReader: a line starting with "---" ends a document when
// one has begun, and only spaces or a comment may follow the "---"; a leading "---" belongs to
// the first document; every line ends with a newline), keeping the line each starts on so that
// YAML errors can name file lines. Where YAMLReader stops at a line starting with "---" that
// other text follows ("--- x", "----"), splitDocuments ends the document before it there too,
// and returns the document the line starts with its err set, naming the line: the documents
// before and after it are read.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur document
	for n, rest := 1, data; len(rest) > 0; n++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		if line[len(line)-1] != '\n' { // YAMLReader ends the last line too
			line = append(line[:len(line):len(line)], '\n')
		}
		if sep, ok := bytes.CutPrefix(line, []byte("---")); ok {
			if t := bytes.TrimSpace(sep); len(t) > 0 && t[0] != '#' {
				if len(cur.data) > 0 {
					docs = append(docs, cur)
				}
				cur = document{line: n, data: line, err: fmt.Sprintf(
					"line %d: invalid YAML document separator %q: only spaces or a comment may follow \"---\" on its line; the document it starts is not read",
					n, bytes.TrimRight(line, "\r\n"))}
				continue
			}
			if len(cur.data) > 0 {
				docs = append(docs, cur)
				cur = document{}
				continue
			}
		}
		if len(cur.data) == 0 {
			cur.line = n
		}
		cur.data = append(cur.data, line...)
	}
	if len(cur.data) > 0 {
		docs = append(docs, cur)
	}
	return docs
}

// merge joins the objects of files in order. An object defined in two places is an error; the
// definition used is the first in the file that servedIn names for it, if it is one of them (an
// object the gateway serves stays when another file defines it again), else the first.
func merge(files []*fileObjects, servedIn func(translator.ObjectKey) string) (*translator.Resources, Sources, error) {
	res := &translator.Resources{}
	src := Sources{objects: map[translator.ObjectKey]Location{}}
	for _, f := range files {
		for _, o := range f.objects {
			if used, dup := src.objects[o.key]; !dup || (used.File != o.loc.File && servedIn != nil && servedIn(o.key) == o.loc.File) {
				src.objects[o.key] = o.loc
			}
		}
	}
	var errs []error
	for _, f := range files {
		src.Warnings = append(src.Warnings, f.warnings...)
		errs = append(errs, f.errs...)
		for _, o := range f.objects {
			if used := src.objects[o.key]; used != o.loc {
				errs = append(errs, &Error{Location: o.loc, Object: o.key,
					Message: "defined again; the definition in " + used.String() + " is used"})
				continue
			}
			appendResources(res, o.value)
		}
	}
	return res, src, errors.Join(errs...)
}

// decoder decodes the documents of one file into it.
type decoder struct {
	cat  *catalog
	file *fileObjects
}

func (d *decoder) fail(loc Location, obj translator.ObjectKey, field, msg string) {
	d.file.errs = append(d.file.errs, &Error{Location: loc, Object: obj, Field: field, Message: msg})
}

// typeHeader is what every document must say about itself.
type typeHeader struct {
	// APIVersion is the document's apiVersion ("v1" for a List).
	APIVersion string `json:"apiVersion"`
	// Kind is the document's kind; with APIVersion it picks the decoder.
	Kind string `json:"kind"`
	// Metadata holds what the document says of its metadata: name and namespace.
	Metadata struct {
		// Name is metadata.name ("" when not given: refused).
		Name string `json:"name"`
		// Namespace is metadata.namespace ("" when not given: DefaultNamespace for a namespaced
		// kind).
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	// Items are the raw objects of a v1 List, each loaded as a document of its own.
	Items []jsonRaw `json:"items"`
}

type jsonRaw []byte

func (r *jsonRaw) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

func (d *decoder) loadDocument(loc Location, doc document) {
	js, err := yaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		msg := "not valid YAML: " + fileLines(err.Error(), doc.line)
		d.fail(loc, translator.ObjectKey{}, "", msg)
		// what a lenient reading makes of it (a key given twice is only a strict error)
		lenient, err := yaml.YAMLToJSON(doc.data)
		if err != nil {
			lenient = doc.data // only its text tells anything (failClosed)
		}
		d.failClosed(loc, lenient, "", msg)
		return
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || string(js) == "null" {
		return // an empty document
	}
	d.loadJSON(loc, js)
}

func (d *decoder) loadJSON(loc Location, js []byte) {
	var h typeHeader
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &h); err != nil {
		field, msg := decodeError(js, err, new(typeHeader))
		d.fail(loc, d.readableKey(js), field, "not a Kubernetes object: "+msg)
		d.failClosed(loc, js, field, "not a Kubernetes object: "+msg)
		return
	}
	if h.APIVersion == "v1" && h.Kind == "List" {
		for _, item := range h.Items {
			d.loadJSON(loc, item)
		}
		return
	}
	obj := translator.ObjectKey{Kind: h.Kind, Namespace: h.Metadata.Namespace, Name: h.Metadata.Name}
	if h.APIVersion == "" || h.Kind == "" {
		d.fail(loc, obj, "", "apiVersion and kind are required")
		d.failClosed(loc, js, "", "apiVersion and kind are required")
		return
	}
	ki, ok := d.cat.read[h.APIVersion+"/"+h.Kind]
	if !ok {
		if field, msg := d.cat.mistake(h.APIVersion, h.Kind); msg != "" {
			d.fail(loc, obj, field, msg)
			d.failClosed(loc, js, field, msg)
			return
		}
		d.file.warnings = append(d.file.warnings, fmt.Sprintf("%s: document %d: skipped %s %s: mcpgate does not read this kind",
			loc.File, loc.Document, h.APIVersion, h.Kind))
		return
	}
	if !ki.namespaced {
		obj.Namespace = ""
	} else if obj.Namespace == "" {
		obj.Namespace = DefaultNamespace
	}
	if obj.Name == "" {
		d.fail(loc, obj, "metadata.name", "a name is required")
		d.failClosed(loc, js, "metadata.name", "a name is required")
		return
	}
	// decode into a scratch Resources first: a document with unknown fields is refused whole
	scratch := &translator.Resources{}
	strict, err := ki.decode(js, obj.Namespace, scratch)
	if err != nil {
		fe := &fieldError{msg: err.Error()}
		errors.As(err, &fe)
		d.fail(loc, obj, fe.field, fe.msg)
		d.failClosed(loc, js, fe.field, fe.msg)
		return
	}
	if len(strict) > 0 {
		for _, e := range strict {
			field, msg := splitStrict(e.Error())
			d.fail(loc, obj, field, msg)
		}
		field, msg := splitStrict(strict[0].Error())
		d.failClosed(loc, js, field, msg)
		return
	}
	d.file.objects = append(d.file.objects, object{key: obj, loc: loc, value: scratch})
}

// failClosed sees that a document that does not load (js: what a lenient reading makes of it,
// nil when none does; field and msg say why) leaves nothing open. A kind whose absence fails
// closed by itself (a route, a backend, a Gateway, a Secret...) needs nothing. A policy, or a
// document that may be one (its kind does not read, or is an unknown kind of an agentgateway
// group), is kept as an unreadable policy when its name and targets read (keepUnreadablePolicy),
// which the translator refuses, so that its targets answer 500 rather than lose their policy to a
// typo; else the file is blind: a policy it may hold protects routes nobody can name, so Watch
// does not start on it, and holds it back whole while it is new (Cache.Load).
func (d *decoder) failClosed(loc Location, js []byte, field, msg string) {
	var h struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if kjson.UnmarshalCaseSensitivePreserveInts(js, &h) != nil {
		h.APIVersion, h.Kind = "", ""
	}
	kind, maybe := d.cat.policyKind(h.APIVersion, h.Kind)
	if h.Kind == "" {
		// a document whose kind does not read is a policy only by its looks: a kustomization
		// or another tool's YAML in the folder is none
		maybe = bytes.Contains(js, []byte("targetRefs"))
	}
	if !maybe {
		return
	}
	if kind == "" {
		d.file.blind = true
		return
	}
	if kept, whole := d.keepUnreadablePolicy(loc, kind, js, field, msg); !kept || !whole {
		d.file.blind = true // a target it names that does not read would be served without it
	}
}

// keepUnreadablePolicy keeps what can be read of a policy document of kind that does not load
// (field and msg say why): its metadata and the targetRefs whose group, kind and name are strings,
// as an unreadable policy that the translator refuses (translator.Resources.UnreadablePolicies).
// It reports whether it kept one (not when the name or no targetRef reads), and whether every
// targetRef read (whole).
func (d *decoder) keepUnreadablePolicy(loc Location, kind string, js []byte, field, msg string) (kept, whole bool) {
	var doc struct {
		Metadata struct {
			Name      any `json:"name"`
			Namespace any `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			TargetRefs []map[string]any `json:"targetRefs"`
		} `json:"spec"`
	}
	_ = kjson.UnmarshalCaseSensitivePreserveInts(js, &doc) // what reads of it, whatever fails
	str := func(v any) string { s, _ := v.(string); return s }
	p := &v1alpha1.AgentgatewayPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: str(doc.Metadata.Name), Namespace: cmp.Or(str(doc.Metadata.Namespace), DefaultNamespace)},
	}
	for _, ref := range doc.Spec.TargetRefs {
		t := v1alpha1.PolicyTargetReference{Group: gwv1.Group(str(ref["group"])), Kind: gwv1.Kind(str(ref["kind"])), Name: gwv1.ObjectName(str(ref["name"]))}
		if s := gwv1.SectionName(str(ref["sectionName"])); s != "" {
			t.SectionName = &s
		}
		if t.Kind != "" && t.Name != "" {
			p.Spec.TargetRefs = append(p.Spec.TargetRefs, t)
		}
	}
	whole = len(p.Spec.TargetRefs) == len(doc.Spec.TargetRefs)
	if p.Name == "" || len(p.Spec.TargetRefs) == 0 {
		return false, whole
	}
	if kind == translator.KindEnterpriseAgentgatewayPolicy {
		p.TypeMeta = metav1.TypeMeta{APIVersion: enterprise.GroupVersion.String(), Kind: kind}
	}
	d.file.objects = append(d.file.objects, object{
		key: translator.ObjectKey{Kind: kind, Namespace: p.Namespace, Name: p.Name}, loc: loc,
		value: &translator.Resources{UnreadablePolicies: []translator.UnreadablePolicy{{Policy: p, Field: field, Message: msg}}},
	})
	return true, whole
}

// readableKey returns what can be read of the key of js, a document whose header does not
// decode: its kind and the namespace and name that are strings (a namespace not given is
// defaulted as for an object that loads); the zero key when its kind is not a string.
func (d *decoder) readableKey(js []byte) translator.ObjectKey {
	var h struct {
		APIVersion, Kind json.RawMessage
		Metadata         struct{ Name, Namespace json.RawMessage }
	}
	_ = json.Unmarshal(js, &h)
	str := func(raw json.RawMessage) string {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	obj := translator.ObjectKey{Kind: str(h.Kind), Namespace: str(h.Metadata.Namespace), Name: str(h.Metadata.Name)}
	if obj.Kind == "" {
		return translator.ObjectKey{}
	}
	if ki, ok := d.cat.read[str(h.APIVersion)+"/"+obj.Kind]; ok && !ki.namespaced {
		obj.Namespace = ""
	} else if ok && h.Metadata.Namespace == nil { // not given (a namespace that is not a string is not "default")
		obj.Namespace = DefaultNamespace
	}
	return obj
}

// yamlLine matches the line numbers of YAML parser errors, which count from a document's start.
var yamlLine = regexp.MustCompile(`\bline (\d+)`)

// fileLines turns the document lines a YAML error names into file lines, the document starting
// on file line start.
func fileLines(msg string, start int) string {
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(m[len("line "):])
		if err != nil {
			return m
		}
		return "line " + strconv.Itoa(n+start-1)
	})
}

// splitStrict turns `unknown field "spec.foo"` into ("spec.foo", "unknown field").
func splitStrict(msg string) (string, string) {
	i := strings.Index(msg, "\"")
	j := strings.LastIndex(msg, "\"")
	if i < 0 || j <= i {
		return "", msg
	}
	return msg[i+1 : j], strings.TrimSpace(msg[:i])
}

// decodeError describes err, an error decoding doc into a value like into: for a value of the
// wrong JSON type, the field with its indices (spec.rules[0].backendRefs[0].name) and what the
// field must be; for a value of the right type that its type refuses (a duration that does not
// parse, data that is not base64), the field and the error's text; else no field and the
// error's text.
func decodeError(doc []byte, err error, into any) (field, msg string) {
	// sigs.k8s.io/json's errors carry the Go path without indices; the standard library's say
	// where in doc the value ends
	var te *json.UnmarshalTypeError
	msg = strings.TrimPrefix(err.Error(), "json: ")
	if !errors.As(json.Unmarshal(doc, into), &te) {
		field, _ = refusedValue(doc, reflect.TypeOf(into), msg)
		return field, msg
	}
	return pathAt(doc, te.Offset), fmt.Sprintf("must be %s, not %s", jsonTypeOf(te.Type), jsonValueName(te.Value))
}

// refusedValue returns the path of the first value of doc (a JSON value that decodes into a t)
// that a type refuses with msg when decoded on its own: a value of a type that decodes itself
// (json.Unmarshaler: a duration, a quantity) or of a []byte (base64). ok is false when there is
// none. Object members are tried in name order, map members in key order.
func refusedValue(doc []byte, t reflect.Type, msg string) (path string, ok bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	refuses := func() bool {
		err := json.Unmarshal(doc, reflect.New(t).Interface())
		return err != nil && strings.Contains(err.Error(), msg)
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) ||
		t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		return "", refuses()
	}
	join := func(name, sub string) string {
		if sub == "" || sub[0] == '[' {
			return name + sub
		}
		return name + "." + sub
	}
	switch t.Kind() {
	case reflect.Struct:
		var members map[string]json.RawMessage
		if json.Unmarshal(doc, &members) != nil {
			return "", false
		}
		fields := jsonFields(t)
		for _, name := range slices.Sorted(maps.Keys(members)) {
			if ft, found := fields[name]; found {
				if sub, ok := refusedValue(members[name], ft, msg); ok {
					return join(name, sub), true
				}
			}
		}
	case reflect.Map:
		var members map[string]json.RawMessage
		if json.Unmarshal(doc, &members) != nil {
			return "", false
		}
		for _, name := range slices.Sorted(maps.Keys(members)) {
			if sub, ok := refusedValue(members[name], t.Elem(), msg); ok {
				return join(name, sub), true
			}
		}
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if json.Unmarshal(doc, &items) != nil {
			return "", false
		}
		for i, item := range items {
			if sub, ok := refusedValue(item, t.Elem(), msg); ok {
				return join(fmt.Sprintf("[%d]", i), sub), true
			}
		}
	}
	return "", false
}

// jsonFields returns the types of the JSON members of struct type t by name, the members of
// embedded structs without a name of their own (`json:",inline"`) included.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if name == "" && f.Anonymous {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, sub := range jsonFields(ft) {
					if _, taken := out[n]; !taken {
						out[n] = sub
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = ft
	}
	return out
}

// pathAt returns the path (a.b[2].c) of the first JSON value of doc that ends at or after
// offset; "" if there is none.
func pathAt(doc []byte, offset int64) string {
	type level struct {
		array   bool
		index   int    // of the current element, in an array
		key     string // of the current member, in an object
		wantKey bool   // in an object: the next token is a key
	}
	var stack []level
	done := func() { // a value ends: an object's next token is a key
		if n := len(stack); n > 0 && !stack[n-1].array {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		d, delim := tok.(json.Delim)
		if delim && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			done()
			continue
		}
		n := len(stack)
		if n > 0 && stack[n-1].wantKey {
			stack[n-1].key, stack[n-1].wantKey = tok.(string), false
			continue
		}
		if n > 0 && stack[n-1].array {
			stack[n-1].index++
		}
		if dec.InputOffset() >= offset {
			var b strings.Builder
			for _, l := range stack {
				switch {
				case l.array:
					fmt.Fprintf(&b, "[%d]", l.index)
				case b.Len() > 0:
					b.WriteString("." + l.key)
				default:
					b.WriteString(l.key)
				}
			}
			return b.String()
		}
		if delim {
			stack = append(stack, level{array: d == '[', index: -1, wantKey: d == '{'})
			continue
		}
		done()
	}
}

// jsonTypeOf names the JSON type that decodes into t: "a string", "an integer", ...
func jsonTypeOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonTypeOf(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// jsonValueName names the kind of JSON value encoding/json's UnmarshalTypeError.Value says.
func jsonValueName(v string) string {
	switch kind, value, _ := strings.Cut(v, " "); kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "number":
		if value != "" { // a number that does not fit: "number 3.5"
			return "the number " + value
		}
		return "a number"
	case "object":
		return "an object"
	case "array":
		return "a list"
	}
	return v
}

func appendResources(dst, src *translator.Resources) {
	dst.GatewayClasses = append(dst.GatewayClasses, src.GatewayClasses...)
	dst.Gateways = append(dst.Gateways, src.Gateways...)
	dst.HTTPRoutes = append(dst.HTTPRoutes, src.HTTPRoutes...)
	dst.Backends = append(dst.Backends, src.Backends...)
	dst.Policies = append(dst.Policies, src.Policies...)
	dst.Services = append(dst.Services, src.Services...)
	dst.EndpointSlices = append(dst.EndpointSlices, src.EndpointSlices...)
	dst.Secrets = append(dst.Secrets, src.Secrets...)
	dst.ConfigMaps = append(dst.ConfigMaps, src.ConfigMaps...)
	dst.Namespaces = append(dst.Namespaces, src.Namespaces...)
	dst.ReferenceGrants = append(dst.ReferenceGrants, src.ReferenceGrants...)
	dst.BackendTLSPolicies = append(dst.BackendTLSPolicies, src.BackendTLSPolicies...)
	dst.UnreadablePolicies = append(dst.UnreadablePolicies, src.UnreadablePolicies...)
}

// pathError is err about path p, naming p once ("/x: no such file or directory"): an
// *fs.PathError of p already names it.
func pathError(p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == p {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", p, err)
}
