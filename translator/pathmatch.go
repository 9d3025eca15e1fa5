package translator

import (
	"fmt"
	"strings"

	"github.com/mcpgate/mcpgate/internal/envoypath"
)

// pathChangeReasons says, for each change, what Envoy does; all of it before the route match.
var pathChangeReasons = [...]struct {
	c    envoypath.Changes
	text string
	// crafted: a request path written otherwise can still come out of normalization with
	// the value (e.g. "%4%31" gives "%41": the '%' of an invalid escape is kept and "%31"
	// decoded), so the value is not strictly unreachable, only by what clients send.
	crafted bool
}{
	{envoypath.EscapedSlash, "unescapes %2F and %5C", true},
	{envoypath.Backslash, `reads \ as /`, false},
	{envoypath.DotSegment, "removes . and .. segments", false},
	{envoypath.Unreserved, "decodes escaped unreserved characters (ALPHA DIGIT - . _ ~)", true},
	{envoypath.Escaped, `escapes characters (space " < > ^ ` + "`" + ` { | }, controls, non-ASCII)`, false},
	{envoypath.Slashes, "merges slashes", false},
}

// unreachablePath says why Envoy never routes a request by the Exact or PathPrefix value p (a
// prefix without its trailing slashes), or "" when it may. Listeners normalize paths before
// matching (listenerPaths), so a value that normalization would change is never what a request
// is matched by; suggest is the value to write instead (a prefix keeps its trailing slashes).
func unreachablePath(p, suggest string) string {
	switch {
	case strings.Contains(p, "#"):
		return "Envoy refuses request paths with a fragment (#), so this never matches"
	case strings.Contains(p, "?"):
		return "Envoy matches the path without its query (from ?), so this never matches; match the query with queryParams"
	case strings.Contains(p, ";"):
		return `Envoy answers paths with ";" (path parameters) with mcpgate's 400 before matching, so this never matches`
	}
	n, action, changes := envoypath.Normalize(p, listenerPaths())
	if action == envoypath.Reject {
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
	want, _, _ := envoypath.Normalize(suggest, listenerPaths())
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
