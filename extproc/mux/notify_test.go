package mux_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/contract"
)

// TestMuxRequestNotifications: a client's notification whose method is a request's (no id) is
// served as the front hop's route to one MCP server serves it: one that names an item goes to the
// one target its prefix names, with the target's own name, and the answer is that target's
// (the go-sdk's servers refuse a tools/call without an id: 400, which the mux passes on, naming the
// target); one that names no item (tools/list), or an item of no target, reaches no target and
// is answered 400 with a JSON-RPC error without an id. Under prefixMode Never the target is the
// one the front hop named. A notifications/... message still goes to every target.
func TestMuxRequestNotifications(t *testing.T) {
	gw := newGateway(t, contract.FailClosed, targetA, targetB)
	sid, _ := openRaw(t, gw.url)
	posts := func() map[string][]string {
		gw.double.mu.Lock()
		defer gw.double.mu.Unlock()
		out := map[string][]string{}
		for k, v := range gw.double.posts {
			out[k] = append([]string(nil), v...)
		}
		return out
	}
	for _, c := range []struct {
		name, body string
		status     int
		answer     string
		// cluster is the target's cluster that gets the message, want what it gets ("" none)
		cluster, want string
	}{
		{"tools/call", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a_x","arguments":{"text":"t"}}}`,
			http.StatusBadRequest, `target a: HTTP 400 Bad Request: invalid request: missing id for \"tools/call\"`, "cluster-a", `"name":"x"`},
		{"prompts/get", `{"jsonrpc":"2.0","method":"prompts/get","params":{"name":"b_q"}}`,
			http.StatusBadRequest, `target b: HTTP 400`, "cluster-b", `"name":"q"`},
		{"resources/read", `{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"b+file:///b.txt"}}`,
			http.StatusBadRequest, `target b: HTTP 400`, "cluster-b", `"uri":"file:///b.txt"`},
		{"completion/complete", `{"jsonrpc":"2.0","method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a_p"},"argument":{"name":"x","value":""}}}`,
			http.StatusBadRequest, `target a: HTTP 400`, "cluster-a", `"name":"p"`},
		{"unknown tool", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"zz_x"}}`,
			http.StatusBadRequest, `{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"Unknown tool: zz_x"}}`, "", ""},
		{"unnamed", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":7}}`,
			http.StatusBadRequest, `"code":-32602`, "", ""},
		{"tools/list", `{"jsonrpc":"2.0","method":"tools/list"}`,
			http.StatusBadRequest, `"id":null,"error":{"code":-32600,"message":"mcpgate mux: tools/list is a request's method`, "", ""},
	} {
		before := posts()
		resp, got := post(t, gw.url, sid, c.body)
		if resp.StatusCode != c.status || !strings.Contains(got, c.answer) {
			t.Errorf("%s: %d %s, want %d with %s", c.name, resp.StatusCode, got, c.status, c.answer)
		}
		after := posts()
		for _, cluster := range []string{"cluster-a", "cluster-b"} {
			sent := after[cluster][len(before[cluster]):]
			switch {
			case cluster != c.cluster && len(sent) > 0:
				t.Errorf("%s: %s got %q, want nothing", c.name, cluster, sent)
			case cluster == c.cluster && (len(sent) != 1 || !strings.Contains(sent[0], c.want) || strings.Contains(sent[0], `"id"`)):
				t.Errorf("%s: %s got %q, want one notification with %s", c.name, cluster, sent, c.want)
			}
		}
	}
	before := posts()
	if resp, got := post(t, gw.url, sid, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("notifications/roots/list_changed: %d %s, want 202", resp.StatusCode, got)
	}
	after := posts()
	for _, cluster := range []string{"cluster-a", "cluster-b"} {
		if n := len(after[cluster]) - len(before[cluster]); n != 1 {
			t.Errorf("notifications/roots/list_changed: %s got %d POSTs, want 1", cluster, n)
		}
	}

	// prefixMode Never: the target the front hop named, the name as it is.
	never := newGatewayMode(t, contract.PrefixModeNever, contract.FailClosed, nil, targetA, targetB)
	sid, _ = openRaw(t, never.url)
	body := `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"y","arguments":{"text":"t"}}}`
	resp, got := postWith(t, never.url, sid, body, map[string]string{contract.HeaderMuxTarget: "b"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(got, "target b: HTTP 400") {
		t.Errorf("Never: tools/call y for b: %d %s, want target b's 400", resp.StatusCode, got)
	}
	if resp, got := post(t, never.url, sid, body); resp.StatusCode != http.StatusBadRequest || !strings.Contains(got, "no single "+contract.HeaderMuxTarget) {
		t.Errorf("Never: tools/call y without the front hop's target: %d %s, want 400 naming %s", resp.StatusCode, got, contract.HeaderMuxTarget)
	}
	never.double.mu.Lock()
	defer never.double.mu.Unlock()
	if p := never.double.posts["cluster-b"]; len(p) == 0 || !strings.Contains(p[len(p)-1], `"name":"y"`) {
		t.Errorf("Never: cluster-b's POSTs %q, want the tools/call of y last", p)
	}
	for _, p := range never.double.posts["cluster-a"] {
		if strings.Contains(p, "tools/call") {
			t.Errorf("Never: cluster-a got %s", p)
		}
	}
}
