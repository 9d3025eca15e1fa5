package xdsconf

import (
	"fmt"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// EscapedSlashesAction is HttpConnectionManager.path_with_escaped_slashes_action.
type EscapedSlashesAction int

// The actions; IMPLEMENTATION_SPECIFIC_DEFAULT is KEEP_UNCHANGED in Envoy (the runtime key that
// could change it is refused by the bootstrap).
const (
	EscapedSlashesKeep EscapedSlashesAction = iota
	EscapedSlashesReject
	EscapedSlashesRedirect
	EscapedSlashesForward
)

func compileEscapedSlashes(a hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction, path string) (EscapedSlashesAction, error) {
	switch a {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
		return EscapedSlashesKeep, nil
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		return EscapedSlashesReject, nil
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
		return EscapedSlashesRedirect, nil
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		return EscapedSlashesForward, nil
	}
	return 0, fmt.Errorf("%s.path_with_escaped_slashes_action: %s not implemented by envoydouble", path, a)
}

// PathAction is what the connection manager does with a request once its path is normalized
// (Envoy's ConnectionManagerUtility::NormalizePathAction).
type PathAction int

// Path actions.
const (
	// PathContinue: the request goes on with the (possibly rewritten) path.
	PathContinue PathAction = iota
	// PathReject: a 400 local reply, details path_normalization_failed.
	PathReject
	// PathRedirect: a 307 local reply whose location is the normalized path (a gRPC request is
	// rejected instead, as gRPC clients do not follow redirects).
	PathRedirect
)

// NormalizePath is Envoy's ConnectionManagerUtility::maybeNormalizePath, which the connection
// manager runs on every request before the host is normalized, before mutateRequestHeaders and
// before the route is matched or any HTTP filter (ext_proc) sees the headers. The steps, in
// Envoy's order:
//  1. a path with a #fragment is rejected (runtime guard http_reject_path_with_fragment, on by
//     default; it does not depend on the configuration);
//  2. path_with_escaped_slashes_action other than KEEP_UNCHANGED: %2F/%2f become '/' and %5C/%5c
//     become '\' in the path (PathUtil::unescapeSlashes); when any was found, REJECT_REQUEST
//     rejects, UNESCAPE_AND_REDIRECT redirects once the next steps are done, UNESCAPE_AND_FORWARD
//     goes on;
//  3. normalize_path: PathUtil::canonicalPath (see CanonicalPath); a path it cannot canonicalize is
//     rejected;
//  4. merge_slashes: PathUtil::mergeSlashes (see MergeSlashes).
//
// Every step works on the path before the first '?': the query is never changed.
func (h *HCM) NormalizePath(path string) (string, PathAction) {
	if strings.Contains(path, "#") {
		return path, PathReject
	}
	action := PathContinue
	if h.EscapedSlashes != EscapedSlashesKeep {
		if p, found := UnescapeSlashes(path); found {
			switch h.EscapedSlashes {
			case EscapedSlashesReject:
				return path, PathReject
			case EscapedSlashesRedirect:
				action = PathRedirect
			}
			path = p
		}
	}
	if h.NormalizePathRFC3986 {
		p, ok := CanonicalPath(path)
		if !ok {
			return path, PathReject
		}
		path = p
	}
	if h.MergeSlashes {
		path = MergeSlashes(path)
	}
	return path, action
}

// UnescapeSlashes is Envoy's PathUtil::unescapeSlashes: in the path before the first '?', every
// %2F or %2f becomes '/' and every %5C or %5c becomes '\' (one left-to-right pass: "%%2f" gives
// "%/"). found reports whether anything was unescaped.
func UnescapeSlashes(path string) (out string, found bool) {
	p, q := splitQuery(path)
	if !strings.Contains(p, "%") {
		return path, false
	}
	u := strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", `\`, "%5c", `\`).Replace(p)
	return u + q, len(u) != len(p)
}

// MergeSlashes is Envoy's PathUtil::mergeSlashes: when the path before the first '?' has "//", it
// becomes its non-empty segments joined by '/', with a leading and a trailing '/' kept if it had
// them (so "//" stays "//", as in Envoy).
func MergeSlashes(path string) string {
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

// CanonicalPath is Envoy's PathUtil::canonicalPath: parameters are stripped from dot segments
// ("/..;x" is "/..", runtime guard strip_dotdot_segments_with_parameters, on by default), then the
// path before the first '?' is canonicalized as Chromium's url::CanonicalizePath does (Envoy links
// the googleurl copy of it) and the query is appended unchanged. ok is false when the path has an
// escaped NUL (%00), which Envoy answers with 400.
func CanonicalPath(path string) (out string, ok bool) {
	path = stripDotSegmentParameters(path)
	p, q := splitQuery(path)
	c, ok := canonicalizePath(p)
	return c + q, ok
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
// ".;" becomes ".", so that canonicalization removes them (CVE-2026-73551).
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
func canonicalizePath(p string) (string, bool) {
	if p == "" {
		return "/", true
	}
	out := make([]byte, 0, len(p)+1)
	if !isURLSlash(p[0]) {
		out = append(out, '/')
	}
	ok := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		class := pathCharClass(c)
		if class&pcSpecial == 0 {
			out = append(out, c)
			continue
		}
		if n := isDot(p, i); n > 0 {
			if out[len(out)-1] != '/' {
				out = append(out, '.') // a dot inside a segment
				i += n - 1
				continue
			}
			kind, consumed := classifyAfterDot(p, i+n)
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
		}
	}
	return string(out), ok
}
