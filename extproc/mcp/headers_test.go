package mcp

import (
	"encoding/json"
	"testing"
)

func TestDecodeHeaderValue(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"tools/call", "tools/call", true},
		{"my tool", "my tool", true},
		{"", "", true},
		{"=?base64??=", "", true},
		{"=?base64?SGVsbG8sIOS4lueVjA==?=", "Hello, 世界", true},
		{"=?base64?PT9iYXNlNjQ/eD89?=", "=?base64?x?=", true},
		{"=?base64?=", "=?base64?=", true}, // too short to be a sentinel
		{"=?base64?SGVsbG8?=", "", false},  // unpadded
		{"=?base64?SGVsbG9=?=", "", false}, // non-zero padding bits
		{"=?base64?%%%?=", "", false},
		{"=?base64?//4=?=", "", false}, // not UTF-8
		{"a\tb", "", false},
		{"a\r\nb", "", false},
		{"a\x7f", "", false},
		{"é", "", false},
	} {
		got, ok := DecodeHeaderValue(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("DecodeHeaderValue(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStringParam(t *testing.T) {
	for _, tt := range []struct {
		params, member, want string
		ok, ambiguous        bool
	}{
		{`{"uri":"file:///a"}`, "uri", "file:///a", true, false},
		{`{"uri":"a","uri":"b"}`, "uri", "b", true, true},
		{`{"uri":"a","URI":"b"}`, "uri", "a", true, true},
		{`{"uri":1}`, "uri", "", false, false},
		{`{"name":"a"}`, "uri", "", false, false},
		{`"a"`, "uri", "", false, false},
		{``, "uri", "", false, false},
	} {
		got, ok, amb := StringParam([]byte(tt.params), tt.member)
		if got != tt.want || ok != tt.ok || amb != tt.ambiguous {
			t.Errorf("StringParam(%s, %s) = %q, %v, %v, want %q, %v, %v", tt.params, tt.member, got, ok, amb, tt.want, tt.ok, tt.ambiguous)
		}
	}
}

func TestCompletionRef(t *testing.T) {
	for params, want := range map[string]string{
		`{"ref":{"type":"ref/prompt","name":"p"},"argument":{}}`:        "prompt p",
		`{"ref":{"type":"ref/resource","uri":"file:///{x}"}}`:           "resource file:///{x}",
		`{"ref":{"type":"ref/resource","name":"n","uri":"u"}}`:          "resource u",
		`{"ref":{"type":"ref/prompt","name":"p"},"REF":{}}`:             "prompt p ambiguous",
		`{"ref":{"type":"ref/prompt","name":"p","NAME":"q"}}`:           "prompt p ambiguous",
		`{"ref":{"type":"ref/prompt","type":"ref/resource","uri":"u"}}`: "resource u ambiguous",
		// Not an item.
		`{"ref":{"type":"ref/prompt","uri":"u"}}`: "",
		`{"ref":{"type":"ref/prompt","name":""}}`: "",
		`{"ref":{"type":"ref/prompt","name":7}}`:  "",
		`{"ref":{"type":"ref/tool","name":"t"}}`:  "",
		`{"ref":{"name":"p"}}`:                    "",
		`{"ref":"ref/prompt"}`:                    "",
		`{}`:                                      "",
		`[]`:                                      "",
	} {
		it, name, ok, ambiguous := CompletionRef(json.RawMessage(params))
		got := ""
		if ok {
			got = it.String() + " " + name
		}
		if ambiguous {
			got += " ambiguous"
		}
		if got != want {
			t.Errorf("CompletionRef(%s) = %q, want %q", params, got, want)
		}
	}
}
