package mcp

import "testing"

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
