package extproc

import (
	"fmt"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// mirrorMismatch checks the headers that mirror a request's body (Mcp-Method, Mcp-Name; MCP
// 2026-07-28) against the messages the body holds, and returns why they disagree ("" when they
// agree or are absent: older clients send neither). The gateway judges the body; a server or an
// intermediary that acted on headers the body contradicts would be a confused deputy, so any
// doubt refuses: a batch carrying either header (2026-07-28 has no batches), a value outside
// printable ASCII or a sentinel that does not decode, repeated values that differ, body members
// servers read differently, Mcp-Name on a method that names nothing or without the member it
// mirrors.
func mirrorMismatch(hs headerList, msgs []mcp.Message, batch bool) string {
	method, hasMethod, problem := mirrored(hs, mcp.MethodHeader, "Mcp-Method")
	if problem != "" {
		return problem
	}
	name, hasName, problem := mirrored(hs, mcp.NameHeader, "Mcp-Name")
	if problem != "" {
		return problem
	}
	switch {
	case !hasMethod && !hasName:
		return ""
	case batch || len(msgs) != 1:
		return "Mcp-Method and Mcp-Name mirror a single message; a batch cannot carry them"
	}
	m := &msgs[0]
	if m.Ambiguous {
		return "the body's member names repeat or differ only in letter case: it cannot be checked against Mcp-Method and Mcp-Name"
	}
	if hasMethod && method != m.Method {
		return fmt.Sprintf("Mcp-Method header %q does not match the body's method %q", clip(method), clip(m.Method))
	}
	if !hasName {
		return ""
	}
	member := mcp.NameMember(m.Method)
	if member == "" {
		return fmt.Sprintf("Mcp-Name header %q on method %q, which names nothing", clip(name), clip(m.Method))
	}
	v, ok, ambiguous := mcp.StringParam(m.Params, member)
	switch {
	case ambiguous:
		return fmt.Sprintf("the body's params.%s repeats or differs only in letter case from another member: it cannot be checked against Mcp-Name", member)
	case !ok:
		return fmt.Sprintf("Mcp-Name header %q does not match the body, which has no string params.%s", clip(name), member)
	case v != name:
		return fmt.Sprintf("Mcp-Name header %q does not match the body's params.%s %q", clip(name), member, clip(v))
	}
	return ""
}

// mirrored returns the decoded value of the header key (display its name in messages), whether it
// is present, and a problem with its values.
func mirrored(hs headerList, key, display string) (value string, present bool, problem string) {
	for i := range hs {
		if hs[i].name != key {
			continue
		}
		v, ok := mcp.DecodeHeaderValue(hs[i].value)
		switch {
		case !ok:
			return "", true, fmt.Sprintf("%s header %q is neither printable ASCII nor base64 of UTF-8 in =?base64?...?=", display, clip(hs[i].value))
		case present && v != value:
			return "", true, fmt.Sprintf("%s header repeated with different values %q and %q", display, clip(value), clip(v))
		}
		value, present = v, true
	}
	return value, present, ""
}

// clipLen bounds each value quoted in an error message.
const clipLen = 64

// clip shortens s to clipLen bytes at a rune boundary, marking the cut.
func clip(s string) string {
	if len(s) <= clipLen {
		return s
	}
	n := clipLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
