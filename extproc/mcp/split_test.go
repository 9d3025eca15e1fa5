package mcp

import "testing"

func TestSplitTarget(t *testing.T) {
	for _, c := range []struct {
		it            Item
		name, targets string
		target, rest  string
		ok            bool
	}{
		{Tool, "a_x", "a,b", "a", "x", true},
		{Tool, "b_get_weather", "a,b", "b", "get_weather", true},
		{Prompt, "b_p", "a,b", "b", "p", true},
		{Tool, "c_x", "a,b", "", "c_x", false}, // not a target of the route
		{Tool, "_x", "a,b", "", "_x", false},   // empty prefix
		{Tool, "ax", "a,b", "", "ax", false},   // no separator
		{Tool, "a+x", "a,b", "", "a+x", false}, // a tool's separator is '_'
		{Resource, "a+file:///x+y", "a,b", "a", "file:///x+y", true},
		{Resource, "a_file:///x", "a,b", "", "a_file:///x", false},
		{Resource, "ab+x", "a,b", "", "ab+x", false}, // a prefix of a name is no name
		{Tool, "a_x", "", "", "a_x", false},
		{Tool, "a_x", "b,a", "a", "x", true},
		{NoItem, "a_x", "a", "", "a_x", false},
	} {
		target, rest, ok := SplitTarget(c.it, c.name, c.targets)
		if target != c.target || rest != c.rest || ok != c.ok {
			t.Errorf("SplitTarget(%v, %q, %q) = %q, %q, %v; want %q, %q, %v", c.it, c.name, c.targets, target, rest, ok, c.target, c.rest, c.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { SplitTarget(Tool, "b_get", "a,b,c") }); n != 0 {
		t.Errorf("SplitTarget allocates %v times per call; the ext_proc hot path wants none", n)
	}
}

func TestEncodeHeaderValue(t *testing.T) {
	for _, v := range []string{"x", "get weather", "wetter-für-köln", "=?base64?eA==?=", "a\nb", ""} {
		enc := EncodeHeaderValue(v)
		if got, ok := DecodeHeaderValue(enc); !ok || got != v {
			t.Errorf("EncodeHeaderValue(%q) = %q, which decodes to %q, %v", v, enc, got, ok)
		}
	}
	if got := EncodeHeaderValue("x"); got != "x" {
		t.Errorf("EncodeHeaderValue(x) = %q, want it plain", got)
	}
}
