package translator

import (
	"regexp"
	"testing"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// envoyMatch applies a StringMatcher as Envoy does: exact as is, safe_regex as a full match.
func envoyMatch(t *testing.T, m *matcherv3.StringMatcher, v string) bool {
	t.Helper()
	if re := m.GetSafeRegex(); re != nil {
		return regexp.MustCompile(`^(?:` + re.GetRegex() + `)$`).MatchString(v)
	}
	return m.GetExact() == v
}

// TestCORSOriginMatches checks the allowOrigins mapping against the Origin values browsers send
// (serialized origins: lower case, no default port): Gateway API's wildcard is any number of DNS
// labels to the left, the scheme and port must agree.
func TestCORSOriginMatches(t *testing.T) {
	for _, c := range []struct {
		origin   string
		match    []string
		nomatch  []string
		wantForm string // "exact" or "regex"
	}{
		{"*", []string{"https://a.example.com", "http://localhost:6274", "null"}, nil, "regex"},
		{"http://localhost:6274", []string{"http://localhost:6274"}, []string{"http://localhost:6275", "https://localhost:6274", "http://localhost"}, "exact"},
		{"HTTPS://App.Example.COM:443", []string{"https://app.example.com"}, []string{"https://app.example.com:443", "http://app.example.com"}, "exact"},
		{"http://app.example.com:80", []string{"http://app.example.com"}, []string{"http://app.example.com:8080"}, "exact"},
		{"https://*.example.com", []string{"https://a.example.com", "https://a.b.example.com"},
			[]string{"https://example.com", "http://a.example.com", "https://a.example.com:8443", "https://aexample.com", "https://a.example.com.evil.net", "https://evil.net/.example.com"}, "regex"},
		{"https://*.example.com:8443", []string{"https://a.example.com:8443"}, []string{"https://a.example.com", "https://a.example.com:9443"}, "regex"},
		{"http://*", []string{"http://localhost", "http://a.b.c", "http://[::1]", "http://127.0.0.1"}, []string{"http://localhost:8080", "https://localhost", "http://a/b"}, "regex"},
		{"http://*:8080", []string{"http://localhost:8080", "http://[::1]:8080"}, []string{"http://localhost", "http://localhost:8081"}, "regex"},
	} {
		m, err := corsOrigin(c.origin)
		if err != "" {
			t.Errorf("%s: %s", c.origin, err)
			continue
		}
		if form := map[bool]string{true: "regex", false: "exact"}[m.GetSafeRegex() != nil]; form != c.wantForm {
			t.Errorf("%s: %s matcher, want %s", c.origin, form, c.wantForm)
		}
		for _, o := range c.match {
			if !envoyMatch(t, m, o) {
				t.Errorf("%s (%v) does not match Origin %s", c.origin, m, o)
			}
		}
		for _, o := range c.nomatch {
			if envoyMatch(t, m, o) {
				t.Errorf("%s (%v) matches Origin %s", c.origin, m, o)
			}
		}
	}
}

// TestCORSOriginRefused: what the CORSOrigin pattern refuses is refused with the value named.
func TestCORSOriginRefused(t *testing.T) {
	for _, o := range []string{"", "localhost:6274", "ftp://a.example.com", "https://", "https://a..example.com",
		"https://a.*.example.com", "https://*example.com", "https://**.example.com", "https://a.example.com/",
		"https://a.example.com:0", "https://a.example.com:65536", "https://a.example.com:08080", "https://[::1]:8080",
		"https://user@a.example.com", "https://a_b.example.com"} {
		if m, err := corsOrigin(o); err == "" {
			t.Errorf("corsOrigin(%q) = %v, want a refusal", o, m)
		}
	}
}
