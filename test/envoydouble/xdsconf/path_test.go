package xdsconf_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
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
		got, ok := xdsconf.CanonicalPath(in)
		if !ok || got != want {
			t.Errorf("CanonicalPath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc", "/a\x00b"} {
		if got, ok := xdsconf.CanonicalPath(in); ok {
			t.Errorf("CanonicalPath(%q) = %q, want a failure", in, got)
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
		if got := xdsconf.MergeSlashes(in); got != want {
			t.Errorf("MergeSlashes(%q) = %q, want %q", in, got, want)
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
		got, found := xdsconf.UnescapeSlashes(c.in)
		if got != c.want || found != c.found {
			t.Errorf("UnescapeSlashes(%q) = %q, %v; want %q, %v", c.in, got, found, c.want, c.found)
		}
	}
}

// TestNormalizePathOrder: Envoy's maybeNormalizePath order: fragment check, escaped slashes,
// canonicalization, slash merging; the redirect decided by the escaped slashes is answered with
// the path the later steps made.
func TestNormalizePathOrder(t *testing.T) {
	type want struct {
		path   string
		action xdsconf.PathAction
	}
	hcm := func(normalize, merge bool, esc xdsconf.EscapedSlashesAction) *xdsconf.HCM {
		return &xdsconf.HCM{NormalizePathRFC3986: normalize, MergeSlashes: merge, EscapedSlashes: esc}
	}
	for _, c := range []struct {
		name string
		h    *xdsconf.HCM
		in   string
		want want
	}{
		{"nothing configured", hcm(false, false, xdsconf.EscapedSlashesKeep), "/a/../b//c%2F", want{"/a/../b//c%2F", xdsconf.PathContinue}},
		{"fragment always rejected", hcm(false, false, xdsconf.EscapedSlashesKeep), "/a#b", want{"/a#b", xdsconf.PathReject}},
		{"normalize then merge", hcm(true, true, xdsconf.EscapedSlashesKeep), "//a/./b/..//c?q=//..", want{"/a/c?q=//..", xdsconf.PathContinue}},
		{"normalize keeps escaped slash", hcm(true, true, xdsconf.EscapedSlashesKeep), "/a%2F..%2Fb", want{"/a%2F..%2Fb", xdsconf.PathContinue}},
		{"unescape before normalize", hcm(true, true, xdsconf.EscapedSlashesForward), "/a/b%2F..%2F..%2Fc", want{"/c", xdsconf.PathContinue}},
		{"backslash unescaped then a separator", hcm(true, false, xdsconf.EscapedSlashesForward), "/a/b%5C..%5Cc", want{"/a/c", xdsconf.PathContinue}},
		{"reject", hcm(true, true, xdsconf.EscapedSlashesReject), "/a%2fb", want{"/a%2fb", xdsconf.PathReject}},
		{"reject only when found", hcm(true, true, xdsconf.EscapedSlashesReject), "/a%2Bb", want{"/a%2Bb", xdsconf.PathContinue}},
		// "a//.." only drops the empty segment (Chromium), merging comes after.
		{"redirect to the normalized path", hcm(true, true, xdsconf.EscapedSlashesRedirect), "/x/a%2F%2F..%2Fb?q=%2F", want{"/x/a/b?q=%2F", xdsconf.PathRedirect}},
		{"no redirect without escaped slash", hcm(true, true, xdsconf.EscapedSlashesRedirect), "/x/../b", want{"/b", xdsconf.PathContinue}},
		{"invalid path", hcm(true, false, xdsconf.EscapedSlashesKeep), "/a%00", want{"/a%00", xdsconf.PathReject}},
		{"invalid not checked without normalize_path", hcm(false, true, xdsconf.EscapedSlashesKeep), "/a%00", want{"/a%00", xdsconf.PathContinue}},
	} {
		p, a := c.h.NormalizePath(c.in)
		if p != c.want.path || a != c.want.action {
			t.Errorf("%s: NormalizePath(%q) = %q, %v; want %q, %v", c.name, c.in, p, a, c.want.path, c.want.action)
		}
	}
}
