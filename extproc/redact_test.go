package extproc

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/extproc/telemetry"
)

// TestDefaultRedactKeys: under the default keys the usual names of credentials are redacted
// whatever their case and separators, at any depth (a headers object's Cookie and X-Api-Key, a
// dotted key), and so are a URL query's credential values and a URL's user:password; the usual
// names that only hold such a word (max_tokens, token_count, keyword, monkey) are kept as sent.
func TestDefaultRedactKeys(t *testing.T) {
	tel, err := telemetry.New(telemetry.Options{RedactKeys: DefaultRedactKeys()})
	if err != nil {
		t.Fatal(err)
	}
	render := func(raw string) string {
		got, _ := tel.Arguments(&telemetry.Record{Arguments: json.RawMessage(raw)})
		return string(got)
	}
	for _, k := range []string{"password", "db_password", "userPassword", "PASSWD", "passphrase", "secret",
		"client_secret", "webhookSecret", "secrets", "token", "github_token", "accessToken", "id-token", "refresh_token",
		"api_key", "apiKey", "x-api-key", "X-Api-Key", "openai_api_key", "aws_secret_access_key", "secret_key",
		"privateKey", "private_key", "ssh_private_key", "credential", "credentials", "gcp.credentials", "cookie",
		"Set-Cookie", "cookies", "headers.Cookie", "authorization", "Proxy-Authorization", "session_id", "sessionId",
		"to\u212aen"} {
		raw := `{"n":1,"` + k + `":"s3cret-value"}`
		if got := render(raw); strings.Contains(got, "s3cret") || !strings.Contains(got, `"[REDACTED]"`) {
			t.Errorf("%s: arguments %s, want its value redacted", k, got)
		}
	}
	for _, k := range []string{"max_tokens", "maxTokens", "token_count", "tokens", "tokenizer", "keyword", "monkey",
		"author", "secret_name", "password_policy", "session", "url", "api_version", "key"} {
		raw := `{"` + k + `":"value","n":1}`
		if got := render(raw); got != raw {
			t.Errorf("%s: arguments %s, want them as sent %s", k, got, raw)
		}
	}
	for raw, want := range map[string]string{
		`{"headers":{"Cookie":"c=1","X-Api-Key":"k","Accept":"text/html"}}`:             `{"headers":{"Accept":"text/html","Cookie":"[REDACTED]","X-Api-Key":"[REDACTED]"}}`,
		`{"auth":{"type":"basic","password":"p"}}`:                                      `{"auth":{"password":"[REDACTED]","type":"basic"}}`,
		`{"private_key":{"kty":"EC","d":"x"}}`:                                          `{"private_key":"[REDACTED]"}`,
		`{"url":"https://h.example/v1?access_token=abc&page=2&API-KEY=k#frag"}`:         `{"url":"https://h.example/v1?access_token=[REDACTED]&page=2&API-KEY=[REDACTED]#frag"}`,
		`{"url":"https://h.example/cb?access%5Ftoken=abc&max_tokens=5"}`:                `{"url":"https://h.example/cb?access%5Ftoken=[REDACTED]&max_tokens=5"}`,
		`{"urls":["https://h.example/?x=1&token=a&sig=1","/p?password=p"]}`:             `{"urls":["https://h.example/?x=1&token=[REDACTED]&sig=1","/p?password=[REDACTED]"]}`,
		`{"repo":"https://bob:gh-pat@github.example/o/r.git","ref":"main"}`:             `{"ref":"main","repo":"https://[REDACTED]@github.example/o/r.git"}`,
		`{"repo":"ssh://git@github.example/o/r.git","to":"a@b.example"}`:                `{"repo":"ssh://git@github.example/o/r.git","to":"a@b.example"}`,
		`{"url":"https://h.example/search?q=max_tokens&max_tokens=5","n":1}`:            `{"url":"https://h.example/search?q=max_tokens&max_tokens=5","n":1}`,
		`{"url":"https://h.example/?token=[REDACTED]","password":"p"}`:                  `{"password":"[REDACTED]","url":"https://h.example/?token=[REDACTED]"}`,
		`{"q":"a < b && c > d","secret":"s"}`:                                           `{"q":"a < b && c > d","secret":"[REDACTED]"}`,
		`{"headers":[{"name":"Cookie","value":"c=1"},{"name":"Accept","value":"*/*"}]}`: `{"headers":[{"name":"Cookie","value":"[REDACTED]"},{"name":"Accept","value":"*/*"}]}`,
	} {
		if got := render(raw); got != want {
			t.Errorf("arguments %s\n rendered %s\n want     %s", raw, got, want)
		}
	}
}
