package mux

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/contract"
)

// TestToClient: what of a target's message the client sees rewritten.
func TestToClient(t *testing.T) {
	c := &call{m: &contract.Mux{}}
	mb := member{t: contract.MuxTarget{Name: "b"}}
	for raw, want := range map[string]string{
		`{"jsonrpc":"2.0","id":7,"method":"roots/list"}`:                                                `{"jsonrpc":"2.0","id":"mcpgate-mux:b:7","method":"roots/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x","reason":"r"}}`:  `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"reason":"r","requestId":"mcpgate-mux:b:\"x\""}}`,
		`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///b.txt"}}`: `{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"b+file:///b.txt"}}`,
		// As they are: list changes, a response, an update without a URI.
		`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`:            `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`:                                     `{"jsonrpc":"2.0","id":1,"result":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{}}`: `{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{}}`,
	} {
		var m message
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		if got := string(c.toClient(&m, mb, []byte(raw))); got != want {
			t.Errorf("toClient(%s) = %s, want %s", raw, got, want)
		}
	}
	// Under Bridge the names and URIs are the target's own.
	c.m.Bridge = true
	raw := `{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///b.txt"}}`
	var m message
	_ = json.Unmarshal([]byte(raw), &m)
	if got := string(c.toClient(&m, mb, []byte(raw))); got != raw {
		t.Errorf("toClient under Bridge (%s) = %s, want it unchanged", raw, got)
	}
}

// TestRetryDelay: a retry field's milliseconds, at most maxRetryDelay.
func TestRetryDelay(t *testing.T) {
	for retry, want := range map[string]time.Duration{
		"0": 0, "1500": 1500 * time.Millisecond, "60000": time.Minute, "60001": maxRetryDelay,
		"99999999999999999999999": maxRetryDelay,
	} {
		if got := retryDelay(retry); got != want {
			t.Errorf("retryDelay(%q) = %s, want %s", retry, got, want)
		}
	}
}
