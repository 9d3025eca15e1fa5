package mcp

import (
	"encoding/json"
	"testing"
)

func TestItemOf(t *testing.T) {
	for method, want := range map[string]Item{
		"tools/call": Tool, "prompts/get": Prompt, "resources/read": Resource,
		"resources/subscribe": Resource, "resources/unsubscribe": Resource,
		"tools/list": NoItem, "prompts/list": NoItem, "initialize": NoItem, "": NoItem,
	} {
		if got := ItemOf(method); got != want {
			t.Errorf("ItemOf(%q) = %v, want %v", method, got, want)
		}
	}
	for method, want := range map[string]bool{
		"tools/list": true, "prompts/list": true, "resources/list": true, "resources/templates/list": true,
		"tools/call": false, "resources/read": false, "initialize": false,
	} {
		if got := Lists(method); got != want {
			t.Errorf("Lists(%q) = %v, want %v", method, got, want)
		}
	}
}

func TestUnknown(t *testing.T) {
	for _, c := range []struct {
		it   Item
		name string
		want string
	}{
		{Tool, "rm", `{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: rm"}}`},
		{Prompt, "greet", `{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown prompt: greet"}}`},
		{Resource, "file:///etc/passwd", `{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown resource: file:///etc/passwd"}}`},
	} {
		got := Unknown(json.RawMessage("7"), c.it, c.name)
		if string(got) != c.want {
			t.Errorf("Unknown(%v, %q) = %s, want %s", c.it, c.name, got, c.want)
		}
	}
}
