package envoypath

import (
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// The cases below are Envoy's own (test/common/http/path_utility_test.cc and
// conn_manager_utility_test.cc), plus the edge cases of Chromium's canonicalizer they rely on.

func TestCanonicalPathAsEnvoy(t *testing.T) {
	for in, want := range map[string]string{
		"/xyz":               "/xyz",
		"/x/y/z":             "/x/y/z",
		"/a/b/../c":          "/a/c",
		"/a/b/./c":           "/a/b/c",
		"a/b/../c":           "/a/c",
		"/a/b/../../../../c": "/c",
		`/a/..\c`:            "/c",
		"/%c0%af":            "/%c0%af",
		"/%5c%25":            "/%5c%25",
		"/a/b/%2E%2E/c":      "/a/c",
		"/a/b/%2e%2e/c":      "/a/c",
		"/A/B/C":             "/A/B/C",
		"/a/%2F%2f/c":        "/a/%2F%2f/c",
		// Parameters on dot segments (strip_dotdot_segments_with_parameters).
		"/xyz/..;foo=bar/abc":                              "/abc",
		"/..;foo=bar/abc":                                  "/abc",
		"/xyz/..;foo=bar":                                  "/",
		"/xyz/.;foo=bar/abc":                               "/xyz/abc",
		"/.;foo=bar/abc":                                   "/abc",
		"/xyz/.;foo=bar":                                   "/xyz/",
		"/xyz/..;foo=bar/.;v1=2,v2=3/abc":                  "/abc",
		"/..;foo=bar/abc/.;mmm":                            "/abc/",
		"/.;aaa/..;foo=bar/abc/.;mmm":                      "/abc/",
		"/xyz/..;foo=bar/.;fff=zzz":                        "/",
		"/xyz/..;foo=bar/.;fff=zzz?blah=woops":             "/?blah=woops",
		"/xyz/..;foo=bar/.;fff=zzz/remain;blah-bluh?query": "/remain;blah-bluh?query",
		// Chromium's rules: unreserved escapes decoded, others kept as written, bare '%' kept,
		// characters of the escape class escaped, slashes not merged, the query untouched.
		"/%41%2d%7E%5f":   "/A-~_",
		"/a%zz/%":         "/a%zz/%",
		"/a b\"<>^`{|}":   "/a%20b%22%3C%3E%5E%60%7B%7C%7D",
		"/caf\xc3\xa9":    "/caf%C3%A9",
		"/a//b/../c":      "/a//c",
		"/a/b/..?x=/../y": "/a/?x=/../y",
		"/a/.b/..c/b.":    "/a/.b/..c/b.",
		"/a/./":           "/a/",
		`\a\b`:            "/a/b",
		"/..":             "/",
		"/%2e/a":          "/a",
		"/a%2eb":          "/a.b",
	} {
		got, _, ok := canonicalPath(in)
		if !ok || got != want {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc", "/a\x00b"} {
		if got, _, ok := canonicalPath(in); ok {
			t.Errorf("canonicalPath(%q) = %q, want a failure", in, got)
		}
	}
}

func TestMergeSlashesAsEnvoy(t *testing.T) {
	for in, want := range map[string]string{
		"":             "",
		"a//b/c":       "a/b/c",
		"/a//b/c/":     "/a/b/c/",
		"a//b/c/":      "a/b/c/",
		"/a":           "/a",
		"//a/b/c":      "/a/b/c",
		"/a//b/c":      "/a/b/c",
		"/a/b/c//":     "/a/b/c/",
		"/a///b/c":     "/a/b/c",
		"/a////b/c":    "/a/b/c",
		"/a//b?a=///c": "/a/b?a=///c",
		"/a//b?":       "/a/b?",
		"//a/?b":       "/a/?b",
		"//":           "//",
	} {
		if got := mergeSlashes(in); got != want {
			t.Errorf("mergeSlashes(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnescapeSlashesAsEnvoy(t *testing.T) {
	for _, c := range []struct {
		in, want string
		found    bool
	}{
		{"", "", false},
		{"%2f%2F", "//", true},
		{"/a%2Fb%2fc/", "/a/b/c/", true},
		{"%2b", "%2b", false},
		{"/a/b/c", "/a/b/c", false},
		{"%2", "%2", false},
		{"%", "%", false},
		{"/abc%2", "/abc%2", false},
		{"foo%", "foo%", false},
		{"/a%2F", "/a/", true},
		{"%2fa/", "/a/", true},
		{"%%2fa/", "%/a/", true},
		{"%2%2fa/", "%2/a/", true},
		{"%5c%5C", `\\`, true},
		{"/a%5Cb%5cc/", `/a\b\c/`, true},
		{"/x/%2E%2e/z%2f%2Fabc%5C../def", `/x/%2E%2e/z//abc\../def`, true},
		{"%2fa%5Cb%2fc%5c?%2fabcd%5C%%2f%", `/a\b/c\?%2fabcd%5C%%2f%`, true},
	} {
		got, found := unescapeSlashes(c.in)
		if got != c.want || found != c.found {
			t.Errorf("unescapeSlashes(%q) = %q, %v; want %q, %v", c.in, got, found, c.want, c.found)
		}
	}
}

// TestNormalizeOrder: Envoy's maybeNormalizePath order: fragment check, escaped slashes,
// canonicalization, slash merging; the redirect decided by the escaped slashes is answered with
// the path the later steps made.
func TestNormalizeOrder(t *testing.T) {
	const (
		keep     = hcmv3.HttpConnectionManager_KEEP_UNCHANGED
		reject   = hcmv3.HttpConnectionManager_REJECT_REQUEST
		redirect = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
		forward  = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	)
	opts := func(normalize, merge bool, esc hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction) Options {
		return Options{NormalizePath: normalize, MergeSlashes: merge, EscapedSlashes: esc}
	}
	for _, c := range []struct {
		name    string
		o       Options
		in      string
		path    string
		action  Action
		changes Changes
	}{
		{"nothing configured", opts(false, false, keep), "/a/../b//c%2F", "/a/../b//c%2F", Continue, 0},
		{"implementation default is keep", opts(true, false, hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT), "/a%2Fb", "/a%2Fb", Continue, 0},
		{"fragment always rejected", opts(false, false, keep), "/a#b", "/a#b", Reject, 0},
		{"normalize then merge", opts(true, true, keep), "//a/./b/..//c?q=//..", "/a/c?q=//..", Continue, DotSegment | Slashes},
		{"normalize keeps escaped slash", opts(true, true, keep), "/a%2F..%2Fb", "/a%2F..%2Fb", Continue, 0},
		{"unescape before normalize", opts(true, true, forward), "/a/b%2F..%2F..%2Fc", "/c", Continue, EscapedSlash | DotSegment},
		{"backslash unescaped then a separator", opts(true, false, forward), "/a/b%5C..%5Cc", "/a/c", Continue, EscapedSlash | DotSegment},
		{"backslash as sent", opts(true, false, keep), `/a\b`, "/a/b", Continue, Backslash},
		{"backslash in the query", opts(true, false, keep), `/a?b\c`, `/a?b\c`, Continue, 0},
		{"reject", opts(true, true, reject), "/a%2fb", "/a%2fb", Reject, EscapedSlash},
		{"reject only when found", opts(true, true, reject), "/a%2Bb", "/a%2Bb", Continue, 0},
		// "a//.." only drops the empty segment (Chromium), merging comes after.
		{"redirect to the normalized path", opts(true, true, redirect), "/x/a%2F%2F..%2Fb?q=%2F", "/x/a/b?q=%2F", Redirect, EscapedSlash | DotSegment},
		{"no redirect without escaped slash", opts(true, true, redirect), "/x/../b", "/b", Continue, DotSegment},
		{"escaped dots", opts(true, false, keep), "/x/.%2E/b/%2e", "/b/", Continue, DotSegment | Unreserved},
		{"escaped unreserved", opts(true, false, keep), "/%41%2e", "/A.", Continue, Unreserved},
		{"escaped characters", opts(true, false, keep), "/a b", "/a%20b", Continue, Escaped},
		{"parameters of dot segments", opts(true, false, keep), "/a/..;x/b", "/b", Continue, DotSegment},
		{"plain", opts(true, true, redirect), "/a/.b/c;d", "/a/.b/c;d", Continue, 0},
		{"invalid path", opts(true, false, keep), "/a%00", "/a%00", Reject, 0},
		{"invalid path, escaped slash found", opts(true, false, redirect), "/a%2F%00", "/a/%00", Reject, EscapedSlash},
		{"invalid not checked without normalize_path", opts(false, true, keep), "/a%00", "/a%00", Continue, 0},
	} {
		p, a, ch := Normalize(c.in, c.o)
		if p != c.path || a != c.action || ch != c.changes {
			t.Errorf("%s: Normalize(%q) = %q, %v, %06b; want %q, %v, %06b", c.name, c.in, p, a, ch, c.path, c.action, c.changes)
		}
	}
}

// FuzzNormalize checks what Normalize says of its work, with the translator's listener options: a
// path that starts with '/' comes out as it went in exactly when nothing changed, and a redirect
// is exactly an escaped slash found (`go test -fuzz FuzzNormalize ./internal/envoypath`). A
// second pass may change more: a double-escaped path ("%2%46") has an escaped slash after one.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/a//b", "/a/./b/../c", `/a\b`, "/%2e%2E/%2F%5c", "/%41%7e%00", "/a b/\xc3\xa9", "//", "/%4%31", "/a/..;x/b?q#f"} {
		f.Add(s)
	}
	o := Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT}
	f.Fuzz(func(t *testing.T, p string) {
		out, action, changes := Normalize(p, o)
		if action == Reject {
			return
		}
		if strings.HasPrefix(p, "/") && (out == p) != (changes == 0) {
			t.Fatalf("%q: normalized to %q with changes %06b", p, out, changes)
		}
		if (action == Redirect) != (changes&EscapedSlash != 0) {
			t.Fatalf("%q: action %v with changes %06b", p, action, changes)
		}
	})
}
