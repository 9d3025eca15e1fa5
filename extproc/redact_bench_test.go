package extproc

import (
	"encoding/json"
	"testing"

	"github.com/mcpgate/mcpgate/extproc/telemetry"
)

// BenchmarkRedactArguments measures the rendering of a tools/call's arguments for the audit line
// and the access log under the default redaction keys: arguments that name no credential (the
// usual, kept as sent), a longer such object, arguments with credential keys, and a URL whose
// query holds a token.
func BenchmarkRedactArguments(b *testing.B) {
	tel, err := telemetry.New(telemetry.Options{RedactKeys: DefaultRedactKeys()})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, args string }{
		{"plain", `{"url":"https://httpbin.org/get","max_tokens":256}`},
		{"plain-400B", `{"query":"select name, owner, created from repositories where language = 'go' order by stars desc limit 20","options":{"timeout":30,"retries":2,"format":"json","fields":["name","owner","created","stars","forks","issues"]},"context":{"user_agent":"mcp-inspector/0.16","locale":"en-US","keyword":"gateway"}}`},
		{"secret-keys", `{"url":"u","auth":{"Password":"p-1","api_key":"k-1"},"Token":"t-1"}`},
		{"url-query", `{"url":"https://api.example.com/v1/items?access_token=abc123&page=2"}`},
	} {
		raw := json.RawMessage(tc.args)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := telemetry.Record{Arguments: raw}
				tel.Arguments(&r)
			}
		})
	}
}
