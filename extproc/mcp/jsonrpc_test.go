package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseSingle(t *testing.T) {
	body := []byte("\xEF\xBB\xBF " + `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://x"}}}` + "\n")
	msgs, batch, err := Parse(body)
	if err != nil || batch || len(msgs) != 1 {
		t.Fatalf("Parse = %v, %v, %v", msgs, batch, err)
	}
	m := msgs[0]
	if m.Kind != KindRequest || m.Method != "tools/call" || string(m.ID) != "7" || m.Ambiguous {
		t.Fatalf("message = %+v", m)
	}
	tc, ok := ParseToolCall(m.Params)
	if !ok || tc.Name != "fetch" || string(tc.Arguments) != `{"url":"https://x"}` || tc.Ambiguous {
		t.Fatalf("tool call = %+v, %v", tc, ok)
	}
}

func TestParseKinds(t *testing.T) {
	tests := []struct {
		body string
		kind Kind
		amb  bool
	}{
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, KindNotification, false},
		{`{"jsonrpc":"2.0","id":"a","result":{}}`, KindResponse, false},
		{`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}`, KindResponse, false},
		{`{"jsonrpc":"2.0","id":1,"method":3}`, KindInvalid, false},
		{`{"jsonrpc":"2.0","id":1}`, KindInvalid, false},
		// Go's encoding/json would read METHOD as method; JavaScript would not.
		{`{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call"}`, KindRequest, true},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","paramſ":{}}`, KindRequest, true},
		// Escaped member names are decoded like every JSON parser does.
		{`{"jsonrpc":"2.0","id":1,"met\u0068od":"tools\/call"}`, KindRequest, false},
		// A repeated member: most parsers keep the last, some the first, some refuse.
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}`, KindRequest, true},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}`, KindRequest, true},
		{`{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`, KindRequest, true},
		{`{"jsonrpc":"2.0","id":1,"met\u0068od":"ping","method":"ping"}`, KindRequest, true},
		{`{"jsonrpc":"2.0","id":1,"result":{},"result":{}}`, KindResponse, true},
		// Repeated names outside the JSON-RPC members are the server's business.
		{`{"jsonrpc":"2.0","id":1,"method":"ping","x":1,"x":2}`, KindRequest, false},
	}
	for _, tt := range tests {
		msgs, _, err := Parse([]byte(tt.body))
		if err != nil {
			t.Fatalf("%s: %v", tt.body, err)
		}
		if msgs[0].Kind != tt.kind || msgs[0].Ambiguous != tt.amb {
			t.Errorf("%s: kind %v ambiguous %v, want %v %v", tt.body, msgs[0].Kind, msgs[0].Ambiguous, tt.kind, tt.amb)
		}
	}
	msgs, _, _ := Parse([]byte(`{"id":1,"met\u0068od":"tools\/call"}`))
	if msgs[0].Method != "tools/call" {
		t.Errorf("escaped method = %q", msgs[0].Method)
	}
}

func TestParseToolCallAmbiguous(t *testing.T) {
	for params, amb := range map[string]bool{
		`{"name":"get-env","name":"fetch"}`:              true,
		`{"name":"fetch","arguments":{},"arguments":{}}`: true,
		`{"name":"fetch","Name":"get-env"}`:              true,
		`{"n\u0061me":"get-env","name":"fetch"}`:         true,
		`{"name":"fetch","arguments":{"a":1,"a":2}}`:     false,
	} {
		tc, ok := ParseToolCall([]byte(params))
		if !ok || tc.Ambiguous != amb {
			t.Errorf("ParseToolCall(%s) = %+v %v, want ambiguous %v", params, tc, ok, amb)
		}
	}
}

func TestParseBatch(t *testing.T) {
	msgs, batch, err := Parse([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"}, {"jsonrpc":"2.0","method":"notifications/x"} ,{"jsonrpc":"2.0","id":2,"result":{}}]`))
	if err != nil || !batch || len(msgs) != 3 {
		t.Fatalf("Parse = %v %v %v", msgs, batch, err)
	}
	if msgs[0].Kind != KindRequest || msgs[1].Kind != KindNotification || msgs[2].Kind != KindResponse {
		t.Errorf("kinds %v %v %v", msgs[0].Kind, msgs[1].Kind, msgs[2].Kind)
	}
	if string(msgs[1].Raw) != `{"jsonrpc":"2.0","method":"notifications/x"}` {
		t.Errorf("raw = %s", msgs[1].Raw)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, body := range []string{``, `   `, `hello`, `{"a":1`, `{"a":1}x`, `[]`, `[1]`, `42`, `"s"`, `{"a":01}`, `{"a":"\x"}`, `{"a":"` + "\x01" + `"}`, strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if _, _, err := Parse([]byte(body)); !errors.Is(err, ErrNotJSONRPC) {
			t.Errorf("Parse(%q) error = %v, want ErrNotJSONRPC", body, err)
		}
	}
}

func TestParseAgreesWithEncodingJSON(t *testing.T) {
	// Every body the scanner accepts is valid JSON, and every valid JSON object it refuses is not.
	for _, body := range []string{
		`{"a":[1,2.5e-3,-0,true,false,null,{"b":"\u00e9\n"}]}`,
		`{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a":[1,]}`, `{"a":1,}`, `{,}`,
		`{"a":"` + "\xff\xfe" + `"}`,
	} {
		_, _, err := Parse([]byte(body))
		valid := json.Valid([]byte(body))
		if (err == nil) != valid {
			t.Errorf("Parse(%q) err=%v, encoding/json valid=%v", body, err, valid)
		}
	}
}

func TestErrorCode(t *testing.T) {
	msgs, _, _ := Parse([]byte(`{"jsonrpc":"2.0","id":1,"error":{"message":"x","code":-32602}}`))
	if code, ok := msgs[0].ErrorCode(); !ok || code != -32602 {
		t.Errorf("ErrorCode = %d %v", code, ok)
	}
}

// TestIsToolError: only a true isError member of the result object itself reports a failed tool
// call; the text of the content, nested objects, other values and JSON-RPC errors do not.
func TestIsToolError(t *testing.T) {
	for body, want := range map[string]bool{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}}`: true,
		`{"jsonrpc":"2.0","id":1,"result":{"isError" : true ,"content":[]}}`:                           true,
		`{"result":{"content":[]},"jsonrpc":"2.0","id":1,"x":{"isError":true}}`:                        false,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}`:                             false,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`:                                             false,
		`{"jsonrpc":"2.0","id":1,"result":{}}`:                                                         false,
		`{"jsonrpc":"2.0","id":1,"result":[{"isError":true}]}`:                                         false,
		`{"jsonrpc":"2.0","id":1,"result":"isError"}`:                                                  false,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x","isError":true}}`:                false,
		`{"jsonrpc":"2.0","id":1,"result":{"isError":"true"}}`:                                         false,
		`{"jsonrpc":"2.0","id":1,"result":{"isError":1}}`:                                              false,
		`{"jsonrpc":"2.0","id":1,"result":{"isError":null}}`:                                           false,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"isError":true}}`:                              false,
		// The members' text may hold the words; only members count.
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"isError\":true}"}]}}`:               false,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\"isError\":true"}],"isError":false}}`: false,
		`{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"isError":true},"content":[]}}`:                     false,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x","isError":true}]}}`:                 false,
		`{"jsonrpc":"2.0","id":1,"result":{"_meta":{"nested":{"isError":true}},"isError":false}}`:                   false,
		// An escaped name is the same name.
		`{"jsonrpc":"2.0","id":1,"result":{"is\u0045rror":true}}`: true,
		// Repeated, or in other letter case (Go's encoding/json reads "IsError" as isError): any
		// true member counts, so that no reading hides a failure.
		`{"jsonrpc":"2.0","id":1,"result":{"isError":true,"isError":false}}`: true,
		`{"jsonrpc":"2.0","id":1,"result":{"isError":false,"isError":true}}`: true,
		`{"jsonrpc":"2.0","id":1,"result":{"isError":false,"IsError":true}}`: true,
		`{"jsonrpc":"2.0","id":1,"result":{"ISERROR":true}}`:                 true,
		`{"jsonrpc":"2.0","id":1,"result":{"isErrors":true,"isErro":true}}`:  false,
	} {
		msgs, _, err := Parse([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if got := msgs[0].IsToolError(); got != want {
			t.Errorf("IsToolError(%s) = %v, want %v", body, got, want)
		}
	}
	msgs, _, _ := Parse([]byte(`[{"jsonrpc":"2.0","id":1,"result":{"content":[]}},{"jsonrpc":"2.0","id":2,"result":{"content":[],"isError":true}}]`))
	if msgs[0].IsToolError() || !msgs[1].IsToolError() {
		t.Error("in a batch, IsToolError does not tell the elements apart")
	}
	m := msgs[1]
	if n := testing.AllocsPerRun(20, func() { m.IsToolError() }); n != 0 {
		t.Errorf("IsToolError allocates %v times", n)
	}
}

func TestEncoders(t *testing.T) {
	if got := string(Unknown(json.RawMessage(`"x-1"`), Tool, `get "env"`)); got != `{"jsonrpc":"2.0","id":"x-1","error":{"code":-32602,"message":"Unknown tool: get \"env\""}}` {
		t.Errorf("Unknown = %s", got)
	}
	if got := string(ErrorResponse(nil, CodeInvalidRequest, "too big")); got != `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"too big"}}` {
		t.Errorf("ErrorResponse = %s", got)
	}
	if got := string(Ping(json.RawMessage(`3`))); got != `{"jsonrpc":"2.0","id":3,"method":"ping"}` {
		t.Errorf("Ping = %s", got)
	}
	for _, b := range [][]byte{Unknown(json.RawMessage(`1`), Tool, "a"), Ping(json.RawMessage(`1`)), EncodeBatch([][]byte{[]byte(`{}`), []byte(`{"a":1}`)})} {
		if !json.Valid(b) {
			t.Errorf("invalid JSON %s", b)
		}
	}
}

func TestIDKey(t *testing.T) {
	same := [][2]string{{`1`, `1.0`}, {`"ab"`, `"a\u0062"`}, {`10`, `1e1`}, {` 5 `, `5`}}
	for _, p := range same {
		if IDKey(json.RawMessage(p[0])) != IDKey(json.RawMessage(p[1])) {
			t.Errorf("IDKey(%s) != IDKey(%s)", p[0], p[1])
		}
	}
	if IDKey(json.RawMessage(`1`)) == IDKey(json.RawMessage(`"1"`)) {
		t.Error("number 1 and string \"1\" share a key")
	}
	for _, bad := range []string{``, `{}`, `[1]`, `tru`, `"x`} {
		if k := IDKey(json.RawMessage(bad)); k != "" {
			t.Errorf("IDKey(%s) = %q", bad, k)
		}
	}
}

func TestFilterListsTools(t *testing.T) {
	msg := []byte(`{"jsonrpc":"2.0","id":2,"result":{"ttlMs":0,"tools":[{"name":"fetch","inputSchema":{"type":"object"}},{"description":"x","name":"get-env"},{"Name":"sneaky"},{"name":"get-env","name":"echo"},{"name":"echo"}],"nextCursor":"c"}}`)
	allowed := map[string]bool{"fetch": true, "echo": true, "sneaky": true}
	out, removed, err := FilterLists(msg, func(_ Item, n string, _ []byte) bool { return allowed[n] })
	if err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0","id":2,"result":{"ttlMs":0,"tools":[{"name":"fetch","inputSchema":{"type":"object"}},{"name":"echo"}],"nextCursor":"c"}}`
	if string(out) != want || removed != 3 {
		t.Errorf("FilterLists = %s (%d removed)\nwant %s", out, removed, want)
	}
	out, removed, err = FilterLists(msg[:len(msg):len(msg)], func(Item, string, []byte) bool { return true })
	if err != nil || removed != 2 || strings.Contains(string(out), "sneaky") || strings.Contains(string(out), `"name":"get-env","name"`) {
		t.Errorf("allow all: %s %d %v (a tool without one readable name must go)", out, removed, err)
	}
	same := []byte(`{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"}]}}`)
	out, removed, err = FilterLists(same, func(Item, string, []byte) bool { return true })
	if err != nil || removed != 0 || &out[0] != &same[0] {
		t.Errorf("unchanged list was copied or changed: %s %d %v", out, removed, err)
	}
	if _, _, err := FilterLists([]byte(`{"result":{"tools":[}`), func(Item, string, []byte) bool { return true }); err == nil {
		t.Error("broken JSON filtered without error")
	}
}

// TestFilterListsItems: prompts by name, resources by URI, templates by URI template, each asked
// about as its item, in one result; other members of the result untouched.
func TestFilterListsItems(t *testing.T) {
	msg := []byte(`{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"greet"},{"name":"secret"}],"resources":[{"uri":"file:///public/a","name":"a"},{"uri":"file:///etc/passwd","name":"passwd"},{"name":"no-uri"}],"resourceTemplates":[{"uriTemplate":"file:///public/{x}"},{"uriTemplate":"file:///etc/{x}"}],"Tools":[{"name":"rm"}],"other":[{"name":"secret"}]}}`)
	var asked []string
	out, removed, err := FilterLists(msg, func(it Item, n string, _ []byte) bool {
		asked = append(asked, it.String()+":"+n)
		return n == "greet" || strings.HasPrefix(n, "file:///public/")
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"greet"}],"resources":[{"uri":"file:///public/a","name":"a"}],"resourceTemplates":[{"uriTemplate":"file:///public/{x}"}],"Tools":[],"other":[{"name":"secret"}]}}`
	if string(out) != want || removed != 5 {
		t.Errorf("FilterLists = %s (%d removed)\nwant %s", out, removed, want)
	}
	wantAsked := []string{"prompt:greet", "prompt:secret", "resource:file:///public/a", "resource:file:///etc/passwd", "resource:file:///public/{x}", "resource:file:///etc/{x}", "tool:rm"}
	if !slices.Equal(asked, wantAsked) {
		t.Errorf("asked about %v, want %v", asked, wantAsked)
	}
}

// TestMayListItems: only a message whose result holds a tools, prompts, resources or
// resourceTemplates array, or that names its result ambiguously, may have items to filter.
func TestMayListItems(t *testing.T) {
	for body, want := range map[string]bool{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}`:                         true,
		`{"jsonrpc":"2.0","id":1,"result":{"nextCursor":"c","Tools":[]}}`:                    true,
		`{"jsonrpc":"2.0","id":1,"result":{"to\u006fls":[]}}`:                                true,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"tools"}]}}`:     false,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":"x","content":[{"tools":[]}]}}`:           false,
		`{"jsonrpc":"2.0","id":1,"result":[{"tools":[]}]}`:                                   false,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"content":[]}}`:             true,
		`{"jsonrpc":"2.0","id":1,"Result":{"tools":[{"name":"a"}]}}`:                         true,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[]},"RESULT":{"tools":[]}}`:             true,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"m","data":{"tools":[]}}}`: false,
		`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"p"}]}}`:                       true,
		`{"jsonrpc":"2.0","id":1,"result":{"Resources":[]}}`:                                 true,
		`{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[],"nextCursor":"c"}}`:        true,
		`{"jsonrpc":"2.0","id":1,"result":{"contents":[{"uri":"u","text":"t"}]}}`:            false,
		`{"jsonrpc":"2.0","id":1,"result":{"messages":[],"prompts":{}}}`:                     false,
	} {
		msgs, _, err := Parse([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if got := msgs[0].MayListItems(); got != want {
			t.Errorf("MayListItems(%s) = %v, want %v", body, got, want)
		}
	}
	// A message made otherwise than by Parse may, when its result is an object.
	if m := (Message{Result: json.RawMessage(`{"content":[]}`)}); !m.MayListItems() {
		t.Error("MayListItems of an unparsed result is false")
	}
}

// TestToolNames: ToolNames names the tools FilterLists asks about, no others.
func TestToolNames(t *testing.T) {
	msg := []byte(`{"jsonrpc":"2.0","id":2,"result":{"ttlMs":0,"tools":[{"name":"fetch","inputSchema":{"type":"object"}},{"description":"x","name":"get-env"},{"Name":"sneaky"},{"name":"get-env","name":"echo"},{"name":7},"x",{"name":"echo"}],"nextCursor":"c"}}`)
	var asked, named []string
	if _, _, err := FilterLists(msg, func(_ Item, n string, _ []byte) bool { asked = append(asked, n); return true }); err != nil {
		t.Fatal(err)
	}
	if err := ToolNames(msg, func(n string) { named = append(named, n) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"fetch", "get-env", "echo"}; !slices.Equal(named, want) || !slices.Equal(asked, want) {
		t.Errorf("ToolNames named %v, FilterLists asked about %v; want %v", named, asked, want)
	}
	if err := ToolNames([]byte(`{"result":{"tools":[}`), func(string) {}); err == nil {
		t.Error("broken JSON read without error")
	}
}

func TestSessionFromURL(t *testing.T) {
	tests := map[string]string{
		"/message?sessionId=694d5887-7007":          "694d5887-7007",
		"/sse?sessionid=NUVADNBQ4YTSO4U2IY6VTTUUEG": "NUVADNBQ4YTSO4U2IY6VTTUUEG",
		"/messages/?session_id=9f0b3c6a":            "9f0b3c6a",
		"http://h/mcp/message?x=1&sessionId=a%2Fb":  "a/b",
		"/message":                            "",
		"/message?session=1#sessionId=2":      "",
		"/messages/?session%5Fid=x%20y":       "x y",
		"/m?sessionId=first&sessionid=second": "first",
	}
	for in, want := range tests {
		if got := SessionFromURL(in); got != want {
			t.Errorf("SessionFromURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWithSession(t *testing.T) {
	tests := map[string]string{
		"/sse?sessionId=694d5887":               "/sse?sessionId=S.T%2FU",
		"/message?x=1&sessionid=N&y=2#frag":     "/message?x=1&sessionid=S.T%2FU&y=2#frag",
		"http://h/messages/?session%5Fid=a%20b": "http://h/messages/?session%5Fid=S.T%2FU",
		"/m?sessionId&z":                        "/m?sessionId=S.T%2FU&z", // no "=": the value is inserted after the name
		"/m?sessionId=a&session_id=b":           "/m?sessionId=S.T%2FU&session_id=S.T%2FU",
		"/message":                              "/message",
		"/message?session=1#sessionId=2":        "/message?session=1#sessionId=2",
	}
	for in, want := range tests {
		if got := WithSession(in, "S.T/U"); got != want {
			t.Errorf("WithSession(%q) = %q, want %q", in, got, want)
		}
		if want != in && SessionFromURL(WithSession(in, "S.T/U")) != "S.T/U" {
			t.Errorf("SessionFromURL(WithSession(%q)) does not read the id back", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"n"}]`,
		`{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"x"},{"name":"y"}]}}`,
		`{"id":1,"error":{"code":-1}}`, `{"a":"\u00`, `[`, `{"a":[[[[`, "\xEF\xBB\xBF{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, _, err := Parse(body)
		if err == nil && !json.Valid(trimJSON(body)) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for i := range msgs {
			m := &msgs[i]
			m.ErrorCode()
			IDKey(m.ID)
			if tc, ok := ParseToolCall(m.Params); ok && tc.Arguments != nil && !validValue(tc.Arguments) {
				t.Fatalf("arguments %q not a JSON value", tc.Arguments)
			}
			out, removed, err := FilterLists(m.Raw, func(_ Item, n string, _ []byte) bool { return len(n)%2 == 0 })
			if err == nil && !json.Valid(out) {
				t.Fatalf("filtered message is invalid JSON: %q", out)
			}
			// What Parse read of the params and the result in its pass is what a walk of their
			// own finds.
			tc, ok := m.ToolCall()
			wantTC, wantOK := ParseToolCall(m.Params)
			if ok != wantOK || tc.Name != wantTC.Name || string(tc.Arguments) != string(wantTC.Arguments) || tc.Ambiguous != wantTC.Ambiguous {
				t.Fatalf("ToolCall of %q: parsed %+v %v, walked %+v %v", m.Raw, tc, ok, wantTC, wantOK)
			}
			walked := Message{Result: m.Result, Ambiguous: m.Ambiguous}
			if m.IsToolError() != walked.IsToolError() {
				t.Fatalf("IsToolError of %q: parsed %v, walked %v", m.Raw, m.IsToolError(), walked.IsToolError())
			}
			if _, all, _ := FilterLists(m.Raw, func(Item, string, []byte) bool { return false }); !m.MayListItems() && (removed > 0 || all > 0) {
				t.Fatalf("MayListItems(%q) is false, FilterLists removed %d", m.Raw, all)
			}
		}
	})
}

// validValue reports whether b is exactly one JSON value.
func validValue(b []byte) bool {
	b = trimJSON(b)
	end, err := skipValue(b, 0, 0)
	return err == nil && end == len(b)
}

func TestAmbiguousMembers(t *testing.T) {
	for raw, want := range map[string]bool{
		`{"url":"a","path":"b"}`:                     false,
		`{"url":"a","URL":"b"}`:                      true,
		`{"url":"a","url":"b"}`:                      true,
		`{"u\u0072l":"a","url":"b"}`:                 true,
		`{"a":{"b":[1,{"k":1,"K":2}]}}`:              true, // nested, ASCII case
		"{\"k\":1,\"\u212a\":2}":                     true, // Kelvin sign (U+212A) folds to k
		`{"a":[{"x":1},{"x":2}]}`:                    false,
		`[{"s":1},{"ſ":2}]`:                          false,
		`{"s":1,"ſ":2}`:                              true, // long s folds to s
		`"text"`:                                     false,
		`{"` + strings.Repeat("k", 3) + `":1,"b":2}`: false,
	} {
		if got := AmbiguousMembers([]byte(raw)); got != want {
			t.Errorf("AmbiguousMembers(%s) = %v, want %v", raw, got, want)
		}
	}
	// A large object (5,000 distinct members) is not reported ambiguous.
	var b strings.Builder
	b.WriteString(`{`)
	for i := range 5000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	big := b.String() + `}`
	if AmbiguousMembers([]byte(big)) {
		t.Error("distinct members reported ambiguous")
	}
	if !AmbiguousMembers([]byte(big[:len(big)-1] + `,"K4999":0}`)) {
		t.Error("a late repeat in a large object missed")
	}
}

// TestParseInto: ParseInto reads what Parse reads, in the storage given when the messages fit it.
func TestParseInto(t *testing.T) {
	var buf [1]Message
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"n"}]`,
		`[]`, `nope`,
	} {
		want, wantBatch, wantErr := Parse([]byte(body))
		got, batch, err := ParseInto(buf[:0], []byte(body))
		if fmt.Sprint(got, batch, err) != fmt.Sprint(want, wantBatch, wantErr) {
			t.Errorf("ParseInto(%s) = %v %v %v, Parse %v %v %v", body, got, batch, err, want, wantBatch, wantErr)
		}
		if len(got) == 1 && &got[0] != &buf[0] {
			t.Errorf("ParseInto(%s) did not use the storage given", body)
		}
	}
}
