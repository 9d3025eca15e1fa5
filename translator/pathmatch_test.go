package translator

import (
	"strings"
	"testing"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestUnreachablePathMatches: an Exact or PathPrefix value that Envoy's path normalization
// (normalize_path, merge_slashes, UNESCAPE_AND_REDIRECT) never produces is refused with why and,
// where there is one, what to write instead; values it keeps, and regular expressions, are not.
func TestUnreachablePathMatches(t *testing.T) {
	exact, prefix, regex := gwv1.PathMatchExact, gwv1.PathMatchPathPrefix, gwv1.PathMatchRegularExpression
	for _, tc := range []struct {
		typ   gwv1.PathMatchType
		value string
		want  []string // substrings of the refusal; none: accepted
	}{
		{exact, "/a/b", nil},
		{prefix, "/a/b/", nil},  // a prefix's trailing slashes are dropped, not matched
		{prefix, "/a/b//", nil}, // the same
		{exact, "/a/b/", nil},
		{exact, "//", nil}, // Envoy's merge_slashes keeps "//" as is
		{prefix, "/", nil},
		{exact, "/a%3bb", nil},  // escapes of other characters are kept as sent, hex case too
		{exact, "/a%3Bb", nil},  //
		{prefix, "/a%2ab", nil}, // "*"
		{exact, "/a%20b", nil},
		{exact, "/100%", nil},  // not an escape: kept
		{exact, "/a%zzb", nil}, //
		{exact, "/a/.b/..c", nil},
		{exact, "/a/.../b", nil},
		{prefix, "/caf%C3%A9", nil},
		{exact, "/a@b:c!$&'()*+,=", nil},
		{regex, "/re//[.]/../%41;?", nil},
		{prefix, "/a//b", []string{"merges slashes", `never matches; write "/a/b"`}},
		{exact, "/a//", []string{"merges slashes", `write "/a/"`}},
		{exact, "/a/./b", []string{"removes . and .. segments", `never matches; write "/a/b"`}},
		{exact, "/a/../b", []string{"removes . and .. segments", `write "/b"`}},
		{prefix, "/a/.", []string{"removes . and .. segments", `write "/a/"`}},
		{exact, "/a/..", []string{"removes . and .. segments", `write "/"`}},
		{prefix, "/a/%2e%2E/b", []string{"removes . and .. segments and decodes escaped", `matched as "/b"; write "/b"`}}, // "%2%65" gives "%2e"
		{exact, "/a//./b", []string{"removes . and .. segments and merges slashes", `write "/a/b"`}},
		{exact, "/a//../b", []string{"Envoy removes . and .. segments before", `write "/a/b"`}}, // ".." removes the empty segment
		{prefix, `/a\b`, []string{`reads \ as /`, `never matches; write "/a/b"`}},
		{exact, "/a%2Fb", []string{"unescapes %2F and %5C", `matched as "/a/b"; write "/a/b"`}},
		{exact, "/a%2fb", []string{"unescapes %2F and %5C", `write "/a/b"`}},
		{prefix, "/a%5Cb", []string{"unescapes %2F and %5C", `write "/a/b"`}},
		{prefix, "/a%5cb", []string{"unescapes %2F and %5C", `write "/a/b"`}},
		{exact, "/%41p%69", []string{"decodes escaped unreserved characters", `matched as "/Api"; write "/Api"`}},
		{prefix, "/a%7eb%2D%5f%30", []string{"decodes escaped unreserved", `write "/a~b-_0"`}},
		{exact, "/a b", []string{"escapes characters", `never matches; write "/a%20b"`}},
		{exact, "/a{b}|^`\"<>", []string{"escapes characters", `write "/a%7Bb%7D%7C%5E%60%22%3C%3E"`}},
		{prefix, "/café", []string{"escapes characters", `write "/caf%C3%A9"`}},
		{exact, "/a\tb", []string{"escapes characters", `write "/a%09b"`}},
		{exact, "/a?b=1", []string{"query", "queryParams"}},
		{prefix, "/a?b", []string{"query"}},
		{prefix, "/a#b", []string{"fragment"}},
		{exact, "/a#", []string{"fragment"}},
		{exact, "/a;b", []string{`";"`, "400", "never matches"}},
		{prefix, "/a/..;x/b", []string{`";"`}},
		{exact, "/a%00", []string{"NUL"}},
		{exact, "/a\x00", []string{"NUL"}},
		{prefix, "/x//./y/%5F", []string{"removes . and .. segments, decodes escaped unreserved characters", "merges slashes", `write "/x/y/_"`}},
		{exact, "a/b", []string{"must start with /"}},
	} {
		typ, value := tc.typ, tc.value
		_, field, msg := compileMatch(&gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: &typ, Value: &value}})
		if len(tc.want) == 0 {
			if msg != "" {
				t.Errorf("%s %q refused: %s: %s", typ, value, field, msg)
			}
			continue
		}
		if field != ".path.value" {
			t.Errorf("%s %q: field %q, want .path.value (message %q)", typ, value, field, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s %q: message %q does not say %q", typ, value, msg, w)
			}
		}
	}
}
