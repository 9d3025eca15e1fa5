// Package envoypath reproduces how Envoy's HTTP connection manager normalizes a request path
// before anything routes or reads it: ConnectionManagerUtility::maybeNormalizePath with PathUtil's
// unescapeSlashes, canonicalPath (Chromium's url::CanonicalizePath, which Envoy links) and
// mergeSlashes, under the connection manager's options path_with_escaped_slashes_action,
// normalize_path and merge_slashes (Options). The translator uses it to refuse route match values
// that no normalized path can equal; the envoy double to serve requests as Envoy does. Its tests
// hold Envoy's own cases (path_utility_test.cc, conn_manager_utility_test.cc).
package envoypath

import (
	"fmt"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Options are the connection manager's fields that normalize paths.
type Options struct {
	// NormalizePath is normalize_path: the path is canonicalized (dot segments, '\', escapes).
	NormalizePath bool
	// MergeSlashes is merge_slashes: repeated slashes become one.
	MergeSlashes bool
	// EscapedSlashes is path_with_escaped_slashes_action. IMPLEMENTATION_SPECIFIC_DEFAULT, and any
	// value Envoy's proto validation would refuse, is KEEP_UNCHANGED.
	EscapedSlashes hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
}

// Action is what the connection manager does with a request once its path is normalized
// (Envoy's ConnectionManagerUtility::NormalizePathAction).
type Action int

// Actions.
const (
	// Continue: the request goes on with the (possibly rewritten) path.
	Continue Action = iota
	// Reject: a 400 local reply, details path_normalization_failed.
	Reject
	// Redirect: a 307 local reply whose location is the normalized path (Envoy rejects a gRPC
	// request instead, as gRPC clients do not follow redirects).
	Redirect
)

// Changes records what normalization changed in a path, in Envoy's order.
type Changes uint8

// Changes.
const (
	// EscapedSlash: %2F or %5C unescaped.
	EscapedSlash Changes = 1 << iota
	// Backslash: a '\' of the path as sent read as '/' (one unescaped from %5C is EscapedSlash).
	Backslash
	// DotSegment: a "." or ".." segment removed.
	DotSegment
	// Unreserved: an escaped unreserved character decoded (also a dot written %2e).
	Unreserved
	// Escaped: a character escaped (space, '"', controls, non-ASCII, ...).
	Escaped
	// Slashes: repeated slashes merged.
	Slashes
)

// Normalize is Envoy's ConnectionManagerUtility::maybeNormalizePath, which the connection manager
// runs on every request before the host is normalized, before mutateRequestHeaders and before the
// route is matched or any HTTP filter (ext_proc) sees the headers. The steps, in Envoy's order:
//  1. a path with a #fragment is rejected (runtime guard http_reject_path_with_fragment, on by
//     default; it does not depend on the options);
//  2. path_with_escaped_slashes_action other than KEEP_UNCHANGED: %2F/%2f become '/' and %5C/%5c
//     become '\' (PathUtil::unescapeSlashes); when any was found, REJECT_REQUEST rejects,
//     UNESCAPE_AND_REDIRECT redirects once the next steps are done, UNESCAPE_AND_FORWARD goes on;
//  3. normalize_path: PathUtil::canonicalPath (see canonicalPath); a path it cannot canonicalize
//     (a NUL, escaped or not) is rejected;
//  4. merge_slashes: PathUtil::mergeSlashes (see mergeSlashes).
//
// Every step works on the path before the first '?': the query is never changed. A rejected path
// is returned as the steps before the one that refused it left it.
func Normalize(path string, o Options) (string, Action, Changes) {
	if strings.Contains(path, "#") {
		return path, Reject, 0
	}
	if unchanged(path) {
		return path, Continue, 0
	}
	in, action := path, Continue
	var changes Changes
	switch o.EscapedSlashes {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT, hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		if p, found := unescapeSlashes(path); found {
			switch o.EscapedSlashes {
			case hcmv3.HttpConnectionManager_REJECT_REQUEST:
				return in, Reject, EscapedSlash
			case hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
				action = Redirect
			}
			changes |= EscapedSlash
			path = p
		}
	}
	if o.NormalizePath {
		if p, _ := splitQuery(in); strings.Contains(p, `\`) {
			changes |= Backslash
		}
		p, c, ok := canonicalPath(path)
		if !ok {
			return path, Reject, changes
		}
		path, changes = p, changes|c
	}
	if o.MergeSlashes {
		if p := mergeSlashes(path); p != path {
			path, changes = p, changes|Slashes
		}
	}
	return path, action, changes
}

// unchanged reports, without the work (the translator checks every route's path match), that
// Normalize leaves path as it is whatever the options: it starts with '/' and has no "//", no
// segment starting with '.' (dot segments, also with ";params"), and no byte that any step
// reads ('%', '\', '#', '?', NUL) or escapes.
func unchanged(path string) bool {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "//") || strings.Contains(path, "/.") {
		return false
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c != '.' && pathCharClass(c)&pcSpecial != 0 {
			return false
		}
	}
	return true
}

// unescapeSlashes is Envoy's PathUtil::unescapeSlashes: in the path before the first '?', every
// %2F or %2f becomes '/' and every %5C or %5c becomes '\' (one left-to-right pass: "%%2f" gives
// "%/"). found reports whether anything was unescaped.
func unescapeSlashes(path string) (out string, found bool) {
	p, q := splitQuery(path)
	if !strings.Contains(p, "%") {
		return path, false
	}
	u := strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", `\`, "%5c", `\`).Replace(p)
	return u + q, len(u) != len(p)
}

// mergeSlashes is Envoy's PathUtil::mergeSlashes: when the path before the first '?' has "//", it
// becomes its non-empty segments joined by '/', with a leading and a trailing '/' kept if it had
// them (so "//" stays "//", as in Envoy).
func mergeSlashes(path string) string {
	p, q := splitQuery(path)
	if !strings.Contains(p, "//") {
		return path
	}
	var segs []string
	for s := range strings.SplitSeq(p, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	prefix, suffix := "", ""
	if strings.HasPrefix(p, "/") {
		prefix = "/"
	}
	if strings.HasSuffix(p, "/") {
		suffix = "/"
	}
	return prefix + strings.Join(segs, "/") + suffix + q
}

// canonicalPath is Envoy's PathUtil::canonicalPath: parameters are stripped from dot segments
// ("/..;x" is "/..", runtime guard strip_dotdot_segments_with_parameters, on by default), then the
// path before the first '?' is canonicalized as Chromium's url::CanonicalizePath does (Envoy links
// the googleurl copy of it) and the query is appended unchanged. ok is false when the path has a
// NUL, escaped (%00) or not, which Envoy answers with 400. changes are the canonicalization's
// (DotSegment, Unreserved, Escaped; a '\' is the caller's to report).
func canonicalPath(path string) (out string, changes Changes, ok bool) {
	path = stripDotSegmentParameters(path)
	p, q := splitQuery(path)
	c, changes, ok := canonicalizePath(p)
	return c + q, changes, ok
}

// splitQuery splits at the first '?' (the query keeps its '?').
func splitQuery(path string) (string, string) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return path[:i], path[i:]
	}
	return path, ""
}

// stripDotSegmentParameters is Envoy's PathUtil::stripParametersFromDotSegments: in the path
// before the first '?' or '#', a segment starting with "..;" becomes ".." and one starting with
// ".;" becomes ".", so that canonicalization removes them.
func stripDotSegmentParameters(path string) string {
	end := strings.IndexAny(path, "?#")
	if end < 0 {
		end = len(path)
	}
	p, rest := path[:end], path[end:]
	if !strings.Contains(p, ".;") {
		return path
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case strings.HasPrefix(s, "..;"):
			segs[i] = ".."
		case strings.HasPrefix(s, ".;"):
			segs[i] = "."
		}
	}
	return strings.Join(segs, "/") + rest
}

// Character classes of Chromium's kPathCharLookup (url_canon_path.cc), as the googleurl copy
// Envoy links has them.
const (
	pcPass     = 0
	pcSpecial  = 1
	pcEscape   = 2 | pcSpecial // written %XX (upper-case hex)
	pcUnescape = 4             // an escaped form (%41) is decoded
	pcInvalid  = 8 | pcSpecial // fails canonicalization (NUL)
)

// pathCharClass is kPathCharLookup: unreserved characters (ALPHA, DIGIT, '-', '_', '~') are
// decoded when escaped, '.' is special (dot segments), '\' is a separator, '%' starts an escape,
// NUL is invalid, other controls, space, '"', '#', '<', '>', '?', '^', '`', '{', '|', '}', DEL and
// bytes >= 0x80 are escaped, the rest passes.
func pathCharClass(c byte) byte {
	switch {
	case c == 0:
		return pcInvalid
	case c < 0x20 || c >= 0x7f:
		return pcEscape
	case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '-', c == '_', c == '~':
		return pcUnescape
	case c == '.':
		return pcSpecial
	}
	if strings.IndexByte(" \"#%<>?\\^`{|}", c) >= 0 {
		return pcEscape
	}
	return pcPass
}

// isDot is Chromium's IsDot: the length of a '.' or "%2e"/"%2E" at i, else 0.
func isDot(s string, i int) int {
	switch {
	case s[i] == '.':
		return 1
	case s[i] == '%' && i+3 <= len(s) && s[i+1] == '2' && (s[i+2] == 'e' || s[i+2] == 'E'):
		return 3
	}
	return 0
}

func isURLSlash(c byte) bool { return c == '/' || c == '\\' }

type dotKind int

const (
	notDirectory dotKind = iota
	directoryCur
	directoryUp
)

// classifyAfterDot is Chromium's ClassifyAfterDot: what a dot that starts a segment means, and how
// many input bytes after it belong to it.
func classifyAfterDot(s string, after int) (dotKind, int) {
	if after == len(s) {
		return directoryCur, 0
	}
	if isURLSlash(s[after]) {
		return directoryCur, 1
	}
	if n := isDot(s, after); n > 0 {
		next := after + n
		if next == len(s) {
			return directoryUp, n
		}
		if isURLSlash(s[next]) {
			return directoryUp, n + 1
		}
	}
	return notDirectory, 0
}

// backUpToPreviousSlash is Chromium's BackUpToPreviousSlash: out ends with '/'; drop the last
// segment, never above the first slash ("/.." is "/").
func backUpToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for out[i] != '/' && i > 0 {
		i--
	}
	return out[:i+1]
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// canonicalizePath is Chromium's DoPath/DoPartialPath on an 8-bit path: a leading '/' is added
// when the path starts with neither '/' nor '\', '\' becomes '/', "." and ".." segments (also
// written %2e) are resolved, escapes of unreserved characters are decoded, other valid escapes
// are kept as written (their hex case too), a '%' that starts no valid escape is kept, characters
// of the escape class are %-escaped. Repeated slashes are kept. ok is false for NUL, escaped or
// not.
func canonicalizePath(p string) (string, Changes, bool) {
	if p == "" {
		return "/", 0, true
	}
	out := make([]byte, 0, len(p)+1)
	if !isURLSlash(p[0]) {
		out = append(out, '/')
	}
	var changes Changes
	ok := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		class := pathCharClass(c)
		if class&pcSpecial == 0 {
			out = append(out, c)
			continue
		}
		if n := isDot(p, i); n > 0 {
			if n == 3 {
				changes |= Unreserved // "%2e" written '.'
			}
			if out[len(out)-1] != '/' {
				out = append(out, '.') // a dot inside a segment
				i += n - 1
				continue
			}
			kind, consumed := classifyAfterDot(p, i+n)
			if kind != notDirectory {
				changes |= DotSegment
				if strings.IndexByte(p[i+n:i+n+consumed], '%') >= 0 {
					changes |= Unreserved // the second dot of ".." written "%2e"
				}
			}
			switch kind {
			case notDirectory:
				out = append(out, '.')
				i += n - 1
			case directoryCur:
				i += n + consumed - 1
			case directoryUp:
				out = backUpToPreviousSlash(out)
				i += n + consumed - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			hi, ok1 := byte(0), false
			lo, ok2 := byte(0), false
			if i+2 < len(p) {
				hi, ok1 = hexVal(p[i+1])
				lo, ok2 = hexVal(p[i+2])
			}
			if !ok1 || !ok2 {
				out = append(out, '%') // not an escape: kept as is
				continue
			}
			v := hi<<4 | lo
			vc := pathCharClass(v)
			switch {
			case vc&pcUnescape != 0:
				out = append(out, v)
				changes |= Unreserved
			case vc == pcInvalid:
				out = append(out, p[i:i+3]...)
				ok = false
			default:
				out = append(out, p[i:i+3]...)
			}
			i += 2
		case class == pcInvalid:
			out = fmt.Appendf(out, "%%%02X", c)
			ok = false
		default: // pcEscape
			out = fmt.Appendf(out, "%%%02X", c)
			changes |= Escaped
		}
	}
	return string(out), changes, ok
}
