package jwt

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/syncbuf"
)

// TestRemoteJWKSURLRedacted: a remote JWKS URL's query, where credentials go, never reaches the
// logs (loaded, HTTP failure, unreachable server); a URL with userinfo is refused (CheckJWKSURL),
// and neither its credentials nor a query's reach the errors of a configuration refused for its
// URL; the host and path still say which key set it is.
func TestRemoteJWKSURLRedacted(t *testing.T) {
	s := newSigner(t, "ES256", "k1")
	srv := newJWKSServer(t, jwks(t, s))
	host := strings.TrimPrefix(srv.URL, "http://")
	secret := "http://" + host + "/keys?api_key=s3cret&x=1#frag"
	var logs syncbuf.Buffer // the background refresh logs too
	a := mustNew(t, remoteConfig("iss", secret, 20*time.Millisecond), Options{CacheSize: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitFor(t, "the key set loaded", func() bool { return strings.Contains(logs.String(), "JWKS loaded") })
	srv.serve(http.StatusInternalServerError, "down")
	waitFor(t, "a failed refresh", func() bool { return strings.Contains(logs.String(), "HTTP status 500") })
	srv.Close()
	waitFor(t, "a refresh of an unreachable server", func() bool { return strings.Contains(logs.String(), "connection refused") })
	a.Close()
	out := logs.String()
	for _, leak := range []string{"s3cret", "api_key", "frag"} {
		if strings.Contains(out, leak) {
			t.Errorf("logs show %q:\n%s", leak, out)
		}
	}
	if want := "http://" + host + "/keys?REDACTED"; !strings.Contains(out, want) {
		t.Errorf("logs do not name the key set as %s:\n%s", want, out)
	}

	for _, bad := range []string{"http://jwks-user:pa55word@" + host + "/keys?api_key=s3cret", "ftp://jwks-user:pa55word@h/keys?api_key=s3cret", "http://jwks-user:pa55word@h/%zz?api_key=s3cret", "/keys?api_key=s3cret"} {
		_, err := New(remoteConfig("iss", bad, time.Hour), Options{Logger: quiet()})
		if err == nil {
			t.Fatalf("%s accepted", bad)
		}
		for _, leak := range []string{"pa55word", "s3cret"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("error for %s shows %q: %v", bad, leak, err)
			}
		}
	}
}

func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://idp.example/.well-known/jwks.json":   "https://idp.example/.well-known/jwks.json",
		"https://u:p@idp.example:8443/jwks?k=v&t=1#f": "https://REDACTED@idp.example:8443/jwks?REDACTED",
		"https://u@idp.example?k=v":                   "https://REDACTED@idp.example?REDACTED",
		"https://idp.example/a@b/jwks":                "https://idp.example/a@b/jwks",
		"https://a@b@idp.example/jwks#frag?notquery":  "https://REDACTED@idp.example/jwks",
		"http://idp.example/%zz?token=t":              "http://idp.example/%zz?REDACTED",
		"/relative?token=t":                           "/relative?REDACTED",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}
