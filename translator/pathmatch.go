package translator

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// pathChanges records what Envoy's path normalization changed in a path, in Envoy's order.
type pathChanges uint8

const (
	changedEscapedSlash pathChanges = 1 << iota // %2F or %5C unescaped (and redirected to)
	changedBackslash                            // '\' read as '/'
	changedDotSegment                           // a "." or ".." segment removed
	changedUnreserved                           // an escaped unreserved character decoded
	changedEscaped                              // a character escaped (space, '"', non-ASCII, ...)
	changedSlashes                              // repeated slashes merged
)

// pathChangeReasons says, for each change, what Envoy does; all of it before the route match.
var pathChangeReasons = [...]struct {
	c    pathChanges
	text string
	// crafted: a request path written otherwise can still come out of normalization with
	// the value (e.g. "%4%31" gives "%41": the '%' of an invalid escape is kept and "%31"
	// decoded), so the value is not strictly unreachable, only by what clients send.
	crafted bool
}{
	{changedEscapedSlash, "unescapes %2F and %5C", true},
	{changedBackslash, `reads \ as /`, false},
	{changedDotSegment, "removes . and .. segments", false},
	{changedUnreserved, "decodes escaped unreserved characters (ALPHA DIGIT - . _ ~)", true},
	{changedEscaped, `escapes characters (space " < > ^ ` + "`" + ` { | }, controls, non-ASCII)`, false},
	{changedSlashes, "merges slashes", false},
}

// unreachablePath says why Envoy never routes a request by the Exact or PathPrefix value p (a
// prefix without its trailing slashes), or "" when it may. Listeners normalize paths before
// matching (normalize_path, merge_slashes, UNESCAPE_AND_REDIRECT, see xdsCommon.listener), so a value
// that normalization would change is never what a request is matched by; suggest is the value
// to write instead (a prefix keeps its trailing slashes).
func unreachablePath(p, suggest string) string {
	switch {
	case strings.Contains(p, "#"):
		return "Envoy refuses request paths with a fragment (#), so this never matches"
	case strings.Contains(p, "?"):
		return "Envoy matches the path without its query (from ?), so this never matches; match the query with queryParams"
	case strings.Contains(p, ";"):
		return `Envoy answers paths with ";" (path parameters) with mcpgate's 400 before matching, so this never matches`
	}
	n, changes, ok := normalizePath(p)
	if !ok {
		return "Envoy refuses request paths with a NUL (%00), so this never matches"
	}
	if n == p {
		return ""
	}
	var texts []string
	crafted := false
	for _, r := range pathChangeReasons {
		if changes&r.c != 0 {
			texts = append(texts, r.text)
			crafted = crafted || r.crafted
		}
	}
	want, _, _ := normalizePath(suggest)
	outcome := "this never matches"
	if crafted {
		outcome = fmt.Sprintf("requests for this path are matched as %q", want)
	}
	return fmt.Sprintf("Envoy %s before matching, so %s; write %q", joinAnd(texts), outcome, want)
}

// joinAnd joins "a", "a and b", "a, b and c".
func joinAnd(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// normalizePath is what the listeners' HCM makes of a request path p without query, fragment
// or ";" (Envoy's ConnectionManagerUtility::maybeNormalizePath): %2F and %5C (either hex
// case) are unescaped (PathUtil::unescapeSlashes), then the path is canonicalized as Chromium's
// url::CanonicalizePath does (PathUtil::canonicalPath: '\' is a separator written '/', "." and
// ".." segments, also written "%2e", are removed, escapes of unreserved characters are decoded,
// other escapes are kept as written, hex case too, a '%' that starts no escape is kept, and
// space, controls, '"', '<', '>', '^', '`', '{', '|', '}', DEL and non-ASCII bytes are escaped
// as %XX), then repeated slashes are merged (PathUtil::mergeSlashes). ok is false for a NUL,
// escaped or not, which Envoy refuses. The envoy double keeps its own copy, closer to Envoy's
// code (test/envoydouble/xdsconf/path.go); pathmatch_double_test.go checks that they agree.
func normalizePath(p string) (out string, changes pathChanges, ok bool) {
	if plainPath(p) {
		return p, 0, true
	}
	if strings.Contains(p, `\`) {
		changes |= changedBackslash
	}
	unescaped := p
	if strings.IndexByte(p, '%') >= 0 {
		unescaped = strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", `\`, "%5c", `\`).Replace(p)
	}
	if unescaped != p {
		changes |= changedEscapedSlash
	}
	// the segments after the leading separator (Chromium adds one when there is none), empty
	// ones included
	segs := strings.Split(strings.TrimPrefix(strings.ReplaceAll(unescaped, `\`, "/"), "/"), "/")
	var done []string // the segments written, joined by '/'
	ok = true
	for i, s := range segs {
		dots := strings.ReplaceAll(strings.ToLower(s), "%2e", ".") // Chromium's IsDot reads %2e as a dot
		if dots != "." && dots != ".." {
			c, segChanges, segOK := canonicalSegment(s)
			changes |= segChanges
			ok = ok && segOK
			done = append(done, c)
			continue
		}
		changes |= changedDotSegment
		if dots != s {
			changes |= changedUnreserved
		}
		if dots == ".." && len(done) > 0 {
			done = done[:len(done)-1] // never above the root
		}
		if i == len(segs)-1 {
			done = append(done, "") // a dot segment at the end leaves a trailing '/'
		}
	}
	out = "/" + strings.Join(done, "/")
	if strings.Contains(out, "//") {
		merged := "/" + strings.Join(strings.FieldsFunc(out, func(r rune) bool { return r == '/' }), "/")
		if strings.HasSuffix(out, "/") {
			merged += "/" // so "//" stays "//", as in Envoy
		}
		if merged != out {
			changes |= changedSlashes
			out = merged
		}
	}
	return out, changes, ok
}

// plainPath reports whether normalizePath leaves p as it is, without the work (every route's
// path match is checked): p starts with '/' and has no '\', '%', "//", "." or ".." segment, or
// byte that canonicalization escapes.
func plainPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`\%"<>^`+"`"+`{|}`, c) >= 0 {
			return false
		}
	}
	for s := range strings.SplitSeq(p[1:], "/") {
		if s == "." || s == ".." {
			return false
		}
	}
	return true
}

// canonicalSegment canonicalizes one path segment (no '/' or '\' in it, not a dot segment) as
// Chromium's DoPartialPath does, and says what it changed; ok is false for a NUL.
func canonicalSegment(s string) (out string, changes pathChanges, ok bool) {
	var b strings.Builder
	ok = true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			v, valid := unhex(s, i+1)
			switch {
			case !valid: // not an escape: kept
				b.WriteByte(c)
				continue
			case v == 0:
				ok = false
				b.WriteString(s[i : i+3])
			case unreserved(v):
				changes |= changedUnreserved
				b.WriteByte(v)
			default: // kept as written, hex case too
				b.WriteString(s[i : i+3])
			}
			i += 2
		case c == 0:
			ok = false
			fmt.Fprintf(&b, "%%%02X", c)
		case c < 0x20 || c >= 0x7f || strings.IndexByte(` "<>^`+"`"+`{|}`, c) >= 0:
			changes |= changedEscaped
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), changes, ok
}

// unreserved reports whether c is an unreserved character (RFC 3986), which Chromium's
// canonicalizer writes unescaped.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// unhex decodes the two hex digits at s[i:i+2].
func unhex(s string, i int) (byte, bool) {
	if i+2 > len(s) {
		return 0, false
	}
	b, err := hex.DecodeString(s[i : i+2])
	if err != nil {
		return 0, false
	}
	return b[0], true
}
