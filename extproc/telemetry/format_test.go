package telemetry

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestAppendMillis: the latency is written as strconv writes the double us/1000, at the edges and
// over random values of every magnitude.
func TestAppendMillis(t *testing.T) {
	values := []int64{0, 1, -1, 9, 10, 100, 999, 1000, 1001, 1010, 1100, 1500, 123456789, -1500, -999, 1e12 - 1, 1e12, -1e12 + 1, -1e12,
		1 << 53, 1<<53 + 1, -(1 << 53), -(1<<53 + 1), 1<<62 + 12345, -(1 << 62), 1<<63 - 1, -1 << 63}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		v := r.Int64N(1 << uint(1+r.IntN(62)))
		if r.IntN(8) == 0 {
			v = -v
		}
		values = append(values, v)
	}
	for _, us := range values {
		want := strconv.AppendFloat(nil, float64(us)/1000, 'f', -1, 64)
		if got := appendMillis(nil, us); string(got) != string(want) {
			t.Fatalf("appendMillis(%d) = %s, want %s", us, got, want)
		}
	}
}

// TestMayNameRedactedKeyHeldKeys: the pre-check, which looks only for the keys that end with no
// other, finds every text with a key that ends with any of them.
func TestMayNameRedactedKeyHeldKeys(t *testing.T) {
	keys := []string{"password", "passwd", "secret", "client_secret", "token", "access_token",
		"refresh_token", "api_key", "apikey", "authorization", "Über"}
	tel, err := New(Options{RedactKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if len(tel.redactKeys) >= len(keys) {
		t.Errorf("redactKeys = %v: none dropped", tel.redactKeys)
	}
	for _, k := range keys {
		for _, raw := range []string{`{"` + k + `":1}`, `{"x":{"MY_` + strings.ToUpper(k) + `":"v"}}`, `["https://h/?a` + k + `=b"]`} {
			if !tel.mayNameRedactedKey([]byte(raw)) {
				t.Errorf("mayNameRedactedKey(%s) = false", raw)
			}
		}
	}
	if tel.mayNameRedactedKey([]byte(`{"url":"https://example.com","n":3}`)) {
		t.Error("mayNameRedactedKey of arguments naming no key = true")
	}
}

// TestValidUTF8: ValidUTF8 writes what strings.ToValidUTF8 writes, one U+FFFD per run of invalid
// bytes, and returns valid text as it is, without allocating.
func TestValidUTF8(t *testing.T) {
	for _, s := range []string{"", "tools/call", "héllo wörld ✓", "a\xffb", "\xff\xfe\xfd", "ok\xc3", "\xed\xa0\x80x", "\u2028\x00"} {
		if got, want := ValidUTF8(s), strings.ToValidUTF8(s, "\uFFFD"); got != want {
			t.Errorf("ValidUTF8(%q) = %q, want %q", s, got, want)
		}
	}
	s := strings.Repeat("fetch/ü", 20)
	if n := testing.AllocsPerRun(20, func() { _ = ValidUTF8(s) }); n != 0 {
		t.Errorf("ValidUTF8 of valid text allocates %v times", n)
	}
}

// TestMayNameRedactedKeyFolded: the pre-check finds every argument that redaction changes, with
// keys in any case and with separators, in a URL's query (%-escaped too) or userinfo, past the
// stack buffer and in non-ASCII text; arguments without any are not decoded.
func TestMayNameRedactedKeyFolded(t *testing.T) {
	tel, err := New(Options{RedactKeys: []string{"password", "token", "api_key", "private_key", "x"}})
	if err != nil {
		t.Fatal(err)
	}
	long, wide := strings.Repeat("z", 600), "héllo"
	for _, key := range []string{"password", "DB_PASSWORD", "pass-word", "Pass.Word", "github_token", "accessToken",
		"X-Api-Key", "apiKey", "API_KEY", "privateKey", "ssh-private-key", "X", "index"} {
		for _, raw := range []string{
			`{"` + key + `":"v"}`,
			`{"a":{"b":[{"` + key + `":1}]}}`,
			`{"url":"https://h/p?q=1&` + key + `=v"}`,
			`{"url":"https://h/p?` + url.QueryEscape(key) + `=v"}`,
			`{"url":"https://h/p?` + strings.ReplaceAll(key, "_", "%5F") + `=v"}`,
			`{"pad":"` + long + `","` + key + `":"v"}`,
			`{"pad":"` + wide + `","` + key + `":"v"}`,
			`{"repo":"https://u:p@h/x","n":1}`,
		} {
			if got := tel.redactJSON(json.RawMessage(raw)); string(got) != raw && !tel.mayNameRedactedKey([]byte(raw)) {
				t.Errorf("mayNameRedactedKey(%.60s...) = false, but redaction gives %.80s", raw, got)
			}
		}
	}
	for _, raw := range []string{`{"url":"https://h/p?q=1","n":3}`, `{"pad":"` + long + `"}`, `{"to":"a@b.org"}`} {
		if tel.mayNameRedactedKey([]byte(raw)) {
			t.Errorf("mayNameRedactedKey(%.60s...) = true", raw)
		}
	}
}
