package mcp

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestRefusedID: the stand-in id carries the refused request's id, with its JSON type and
// spelling, and the item's kind and name, so that its answer becomes the request's error without
// any state.
func TestRefusedID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		it   Item
		tool string
	}{
		{`5`, Tool, "get-env"},
		{`"call-9"`, Tool, "get-env"},
		{`-1.5e3`, Tool, "x"},
		{`12345678901234567890`, Tool, "t"},
		{`"a\u0062\"<"`, Tool, `we"ird ✓`},
		{`null`, Tool, ""},
		{` 7 `, Tool, "t"},
		{`"mcpgate-refused:x"`, Tool, "t"},
		{`8`, Prompt, "greet"},
		{`"r"`, Resource, "file:///etc/passwd"},
	} {
		standIn := RefusedID(json.RawMessage(tc.id), tc.it, tc.tool)
		var s string
		if err := json.Unmarshal(standIn, &s); err != nil || !strings.HasPrefix(s, RefusedIDPrefix) {
			t.Errorf("RefusedID(%s) = %s: not a string with the prefix", tc.id, standIn)
			continue
		}
		if msgs, _, err := Parse(Ping(standIn)); err != nil || msgs[0].Kind != KindRequest || IDKey(msgs[0].ID) == "" {
			t.Errorf("the ping with id %s is no request: %v", standIn, err)
		}
		got, ok := RefusedAnswer(standIn)
		if want := Unknown(json.RawMessage(strings.TrimSpace(tc.id)), tc.it, tc.tool); !ok || string(got) != string(want) {
			t.Errorf("RefusedAnswer(RefusedID(%s, %q)) = %s, %v; want %s", tc.id, tc.tool, got, ok, want)
		}
		// A server that escapes what it echoes.
		escaped := strings.Replace(string(standIn), "-", `\u002d`, 1)
		if got, ok := RefusedAnswer(json.RawMessage(escaped)); !ok || !json.Valid(got) || !strings.Contains(string(got), "-32602") {
			t.Errorf("RefusedAnswer(%s) = %s, %v", escaped, got, ok)
		}
	}
}

// TestRefusedAnswerOtherIDs: other ids are not stand-ins; a stand-in whose payload cannot be read
// still becomes an error, with the id as it is (never the answer, never JSON the sender chose).
func TestRefusedAnswerOtherIDs(t *testing.T) {
	for _, id := range []string{`5`, `"call-9"`, `null`, `"mcpgate-refused"`, `"Mcpgate-refused:x"`, `"\u006dcpgate"`, ``, `"`, `{"a":1}`} {
		if got, ok := RefusedAnswer(json.RawMessage(id)); ok {
			t.Errorf("RefusedAnswer(%s) = %s, true: not a stand-in", id, got)
		}
	}
	enc := func(payload string) string {
		return `"` + RefusedIDPrefix + base64.RawURLEncoding.EncodeToString([]byte(payload)) + `"`
	}
	for _, id := range []string{
		`"` + RefusedIDPrefix + `"`,
		`"` + RefusedIDPrefix + `!!!"`,
		enc(`{"id":{"x":1},"tool":"t"}`),
		enc(`{"id":[1],"tool":"t"}`),
		enc(`{"id":1}`),
		enc(`{"id":1,"tool":2}`),
		enc(`{"id":1,"tool":"t","x":1}`),
		enc(`{"id":1,"id":2,"tool":"t"}`),
		enc(`{"id":1,"tool":"t","prompt":"p"}`),
		enc(`{"id":1,"tool":"t","tool":"u"}`),
		enc(`{"id":1,"tools":"t"}`),
		enc(`{"id":1,"tool":"t"`),
		enc(`{"id":1,"tool":"t"},"x":{`),
	} {
		got, ok := RefusedAnswer(json.RawMessage(id))
		var m struct {
			ID    json.RawMessage    `json:"id"`
			Error struct{ Code int } `json:"error"`
		}
		if !ok || json.Unmarshal(got, &m) != nil || string(m.ID) != id || m.Error.Code != CodeInvalidParams {
			t.Errorf("RefusedAnswer(%s) = %s, %v; want an error -32602 with the id as it is", id, got, ok)
		}
	}
}

func FuzzRefusedAnswer(f *testing.F) {
	f.Add([]byte(RefusedID(json.RawMessage(`5`), Tool, "t")))
	f.Add([]byte(`"` + RefusedIDPrefix + `e30"`))
	f.Add([]byte(`"x"`))
	f.Fuzz(func(t *testing.T, id []byte) {
		if got, ok := RefusedAnswer(id); ok && !json.Valid(got) {
			t.Fatalf("RefusedAnswer(%q) = %q: not JSON", id, got)
		}
	})
}
