package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"
)

// lineBreakers are the characters some readers of a log take for the end of a line: JSON lines
// readers split on \n, others on \r, Python's str.splitlines also on U+0085, U+2028 and U+2029.
var lineBreakers = []string{"\n", "\r", "\u0085", "\u2028", "\u2029"}

// checkAuditLine fails unless line is one audit record: valid UTF-8, no character a reader could
// take for a line end before its final \n, and exactly one JSON object. It returns the object.
func checkAuditLine(t *testing.T, line []byte) map[string]any {
	t.Helper()
	body, ok := bytes.CutSuffix(line, []byte("\n"))
	if !ok {
		t.Fatalf("audit line does not end with a newline: %q", line)
	}
	if !utf8.Valid(body) {
		t.Errorf("audit line is not UTF-8: %q", body)
	}
	for _, lb := range lineBreakers {
		if bytes.Contains(body, []byte(lb)) {
			t.Errorf("audit line holds %q: %q", lb, body)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("audit line is not a JSON object: %v: %q", err, body)
	}
	if dec.More() {
		t.Fatalf("audit line holds more than one JSON value: %q", body)
	}
	return m
}

// decoded is raw as a JSON reader sees it, with each run of invalid UTF-8 bytes as one U+FFFD,
// as the audit line writes it (ValidUTF8; encoding/json alone reads one U+FFFD per byte).
func decoded(t *testing.T, raw string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(ValidUTF8(raw)), &v); err != nil {
		t.Fatalf("test input %q is not JSON: %v", raw, err)
	}
	return v
}

// TestAuditLineCannotBeForged: the arguments and the id of a call are the client's JSON, copied
// into the audit line; whatever white space, line separators or invalid UTF-8 they hold, each
// record stays one line holding one JSON object, with the client's values as they were sent. A
// client cannot write a line of its own (here one attributing a call to alice) nor break its
// record.
func TestAuditLineCannotBeForged(t *testing.T) {
	forged := `{"time":"2026-01-01T00:00:00Z","subject":"alice","method":"tools/call","tool":"get-env","decision":"allow","outcome":"result"}`
	deep := strings.Repeat(`[`, 300) + "\"\u2028\"" + strings.Repeat("\n]", 300) // under 1 KiB: kept as JSON
	args := []string{
		`{"url":"https://example.com","x":` + "\n" + forged + "\n" + `}`,
		"{\r\n\t\"a\" :\r\n [ 1 , 2 ] }",
		"{\"s\":\"line\u2028sep\u2029par\u0085nel\"}",
		"{\"k\u2028\":\"v\"}",
		"{\"bad\":\"\xff\xfe\xc3\",\"cut\":\"\xe2\x80\"}",
		"{\"esc\":\"\\\"\\\\\\n\\u2028\\ud800\",\"e\":\"\\/\"}",
		`{"n":-1.5e+10,"t":true,"f":false,"z":null,"o":{},"l":[]}`,
		"{\"d\":" + deep + "}",
	}
	ids := []string{"7", "-0.5e3", "\"a\\nb\"", "\"a\u2028b\"", "\"\xff\"", "{ \"x\" :\n 1 }"}
	for _, redact := range [][]string{nil, {"password"}} {
		for i, a := range args {
			id := ids[i%len(ids)]
			var out bytes.Buffer
			tel, err := New(Options{Audit: &out, RedactKeys: redact})
			if err != nil {
				t.Fatal(err)
			}
			r := sampleRecord()
			r.Arguments, r.ID = json.RawMessage(a), json.RawMessage(id)
			tel.Finish(r, r.Time)
			if n := bytes.Count(out.Bytes(), []byte("\n")); n != 1 {
				t.Errorf("arguments %q, id %q: %d lines: %q", a, id, n, out.String())
			}
			m := checkAuditLine(t, out.Bytes())
			if m["subject"] != "user-id" {
				t.Errorf("subject = %v", m["subject"])
			}
			if got, want := m["arguments"], decoded(t, a); !reflect.DeepEqual(got, want) {
				t.Errorf("arguments %q written as %v, want %v", a, got, want)
			}
			if got, want := m["jsonrpc_id"], decoded(t, id); !reflect.DeepEqual(got, want) {
				t.Errorf("id %q written as %v, want %v", id, got, want)
			}
		}
	}
}

// TestAuditLineFieldsCannotBreak: the other fields a client or a token can choose (tool, method,
// session, subject, claims, a truncated argument text) are encoded so that they too keep the
// record one line of one JSON object.
func TestAuditLineFieldsCannotBreak(t *testing.T) {
	hostile := "x\n{\"subject\":\"alice\"}\r\u2028\u2029\u0085\xff\"\\\x00"
	var out bytes.Buffer
	tel, err := New(Options{Audit: &out, MaxArgumentBytes: 8})
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	r.Tool, r.Method, r.Session, r.Subject, r.Rule = hostile, hostile, hostile, hostile, hostile
	r.Claims = map[string]any{hostile: hostile, "groups": []any{hostile}, "o": map[string]any{hostile: 1.0}}
	r.Arguments = json.RawMessage("{\"a\":\"\u2028\u0085\n\xff\xff\xff\xff\"}")
	tel.Finish(r, r.Time)
	m := checkAuditLine(t, out.Bytes())
	want := strings.ToValidUTF8(hostile, "\uFFFD")
	for _, f := range []string{"tool", "method", "session", "subject", "rule"} {
		if m[f] != want {
			t.Errorf("%s = %q, want %q", f, m[f], want)
		}
	}
	if m["arguments_truncated"] != true {
		t.Errorf("arguments not truncated: %v", m)
	}
}

// FuzzAppendJSON: any JSON value (strings may hold invalid UTF-8, as the gateway's scanner lets
// them) is written as one line of valid UTF-8 that a JSON reader reads as the same value, each
// run of invalid bytes read as one U+FFFD.
func FuzzAppendJSON(f *testing.F) {
	for _, s := range []string{`{"a" : [1, 2]}`, "\"\u2028\xff\"", "\"\xff\xfe\ufffd\xc3\"", "{\n\"k\u0085\":\r\n\"\\u2028\\\"\"}", `"\\"`, `[ ]`, `-1.5e3`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		out := appendJSON(nil, raw)
		if !utf8.Valid(out) {
			t.Fatalf("%q: not UTF-8: %q", raw, out)
		}
		for _, lb := range lineBreakers {
			if bytes.Contains(out, []byte(lb)) {
				t.Fatalf("%q: holds %q: %q", raw, lb, out)
			}
		}
		var want, got any
		if err := json.Unmarshal([]byte(ValidUTF8(string(raw))), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: written as %q, not JSON: %v", raw, out, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: written as %q, read as %v, want %v", raw, out, got, want)
		}
	})
}

// TestSpanOfInvalidUTF8Exported: a client's method, tool, session and id in invalid UTF-8 do not
// cost the export of the spans sent with theirs (an OTLP request is a protobuf, whose strings
// must be UTF-8): they are exported with U+FFFD.
func TestSpanOfInvalidUTF8Exported(t *testing.T) {
	c, tp := exportTo(t)
	tel, _ := New(Options{TracerProvider: tp})
	for _, tool := range []string{"fetch", "fe\xfftch"} {
		r := sampleRecord()
		r.Tool, r.Method, r.Session, r.ID = tool, "tools/call\xfe", "s\xff", json.RawMessage("\"\xff\"")
		tel.StartSpan(propagation.MapCarrier{}, r, "")
		tel.Finish(r, r.Time.Add(time.Millisecond))
	}
	// Shutdown exports what is left and returns once the collector has answered.
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("export failed: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// (a method no server answered names its span "other"; the attributes keep what was sent)
	if !slices.Equal(c.names, []string{"other", "other"}) {
		t.Errorf("collector got %q", c.names)
	}
	attrs := map[string]string{}
	for _, a := range c.spans[len(c.spans)-1].GetAttributes() {
		attrs[a.GetKey()] = a.GetValue().GetStringValue()
	}
	if attrs["gen_ai.tool.name"] != "fe\uFFFDtch" || attrs["mcp.method.name"] != "tools/call\uFFFD" || attrs["mcp.session.id"] != "s\uFFFD" {
		t.Errorf("attributes of the second span %q: want the tool, method and session with U+FFFD", attrs)
	}
}
