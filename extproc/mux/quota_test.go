package mux_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// initBody is a client's initialize.
const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// as returns the headers of a request the front hop's ext_proc passes for caller
// (contract.HeaderMuxCaller); "" for none.
func as(caller string) map[string]string {
	if caller == "" {
		return nil
	}
	return map[string]string{contract.HeaderMuxCaller: caller}
}

// openAs initializes a session at url as caller and returns its id, or fails the test.
func openAs(t *testing.T, url, caller string) string {
	t.Helper()
	resp, body := postWith(t, url, "", initBody, as(caller))
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize as %q: %d %s, want a session", caller, resp.StatusCode, body)
	}
	return sid
}

// checkCallerLimit fails the test unless resp (body) is the mux's refusal of a caller beyond its
// limit of sessions: 429, Retry-After 60, a JSON-RPC -32603 error with the request's id (idJSON)
// naming the limit's flag.
func checkCallerLimit(t *testing.T, step string, resp *http.Response, body, idJSON string) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "60" || !json.Valid([]byte(body)) ||
		!strings.HasPrefix(body, `{"jsonrpc":"2.0","id":`+idJSON+`,"error":{"code":-32603,`) || !strings.Contains(body, "per-caller limit") ||
		!strings.Contains(body, "--mux-max-sse-sessions-per-caller") || resp.Header.Get("Mcp-Session-Id") != "" {
		t.Errorf("%s: %d Retry-After %q %s, want 429, Retry-After 60 and a -32603 error with id %s naming the per-caller limit and --mux-max-sse-sessions-per-caller",
			step, resp.StatusCode, resp.Header.Get("Retry-After"), body, idJSON)
	}
}

// TestBridgeSSECallerLimit: the SSE bridge holds at most Options.MaxSSESessionsPerCaller sessions
// of one caller (contract.HeaderMuxCaller): that caller's next initialize is 429 (Retry-After, a
// JSON-RPC error naming the limit), on a bridged and on a multiplexed backend alike (FailOpen
// too), while
// another caller still opens sessions; requests without the header are one caller. The places
// of the sessions deleted, and of those that failed to open, are free again, round after round,
// and no caller is counted once all are gone. No target sees the header.
func TestBridgeSSECallerLimit(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, func(o *mux.Options) { o.MaxSSESessionsPerCaller = 2 })
	multiplexed, err := json.Marshal(contract.Mux{Gateway: "ns/gw", Backend: "ns/mx", PrefixMode: "Conditional", FailureMode: contract.FailClosed,
		Targets: []contract.MuxTarget{targetA, targetE}})
	if err != nil {
		t.Fatal(err)
	}
	failOpen, err := json.Marshal(contract.Mux{Gateway: "ns/gw", Backend: "ns/mx", PrefixMode: "Conditional", FailureMode: contract.FailOpen,
		Targets: []contract.MuxTarget{targetA, targetE}})
	if err != nil {
		t.Fatal(err)
	}
	refused := bridgeDesc
	refused.Targets = []contract.MuxTarget{{Name: "r", Cluster: "cluster-refuse", Path: "/sse", Protocol: contract.TransportSSE}}
	refusedDesc, err := json.Marshal(refused)
	if err != nil {
		t.Fatal(err)
	}
	mxURL, refusedURL := serveFront(t, gw.mux, string(multiplexed)), serveFront(t, gw.mux, string(refusedDesc))
	failOpenURL := serveFront(t, gw.mux, string(failOpen))

	for _, url := range []string{refusedURL, refusedURL, refusedURL} {
		// A session that fails to open (its target refuses) gives its place back.
		if resp, body := postWith(t, url, "", initBody, as("alice")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("initialize as alice, target refuses: %d %s, want the target's 401", resp.StatusCode, body)
		}
	}
	var bobs []string
	for round := range 3 {
		alice := []string{openAs(t, gw.url, "alice"), openAs(t, gw.url, "alice")}
		resp, body := postWith(t, gw.url, "", initBody, as("alice"))
		checkCallerLimit(t, "bridged, alice's third session", resp, body, "1")
		resp, body = postWith(t, mxURL, "", initBody, as("alice"))
		checkCallerLimit(t, "multiplexed with an SSE target, alice's third session", resp, body, "1")
		// Not a target's failure: FailOpen does not open a session without the SSE target.
		resp, body = postWith(t, failOpenURL, "", initBody, as("alice"))
		checkCallerLimit(t, "multiplexed FailOpen with an SSE target, alice's third session", resp, body, "1")
		if round == 0 {
			bobs = append(bobs, openAs(t, gw.url, "bob"), openAs(t, mxURL, "bob"))
			if resp, body := postWith(t, gw.url, "", initBody, as("bob")); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("bob's third session: %d %s, want 429", resp.StatusCode, body)
			}
		}
		for _, sid := range alice {
			if status := deleteSession(t, gw.url, sid); status != http.StatusNoContent {
				t.Fatalf("round %d: DELETE alice's session: %d", round, status)
			}
		}
	}
	// Requests without a caller are one caller.
	unknown := []string{openAs(t, gw.url, ""), openAs(t, gw.url, "")}
	resp, body := postWith(t, gw.url, "", initBody, nil)
	checkCallerLimit(t, "a third session without a caller", resp, body, "1")

	for _, sid := range append(bobs, unknown...) {
		url := gw.url
		if sid == bobs[1] {
			url = mxURL
		}
		if status := deleteSession(t, url, sid); status != http.StatusNoContent {
			t.Fatalf("DELETE: %d", status)
		}
	}
	if bridge, legacy := mux.SessionCallers(gw.mux); bridge != 0 || legacy != 0 {
		t.Errorf("every session deleted: sessions counted for %d callers (bridge), %d (HTTP+SSE clients); want none", bridge, legacy)
	}
	gw.double.mu.Lock()
	defer gw.double.mu.Unlock()
	for cluster, hs := range gw.double.seen {
		for _, h := range hs {
			if v := h.Values(contract.HeaderMuxCaller); len(v) > 0 {
				t.Errorf("cluster %s got %s %q: want none", cluster, contract.HeaderMuxCaller, v)
			}
		}
	}
}

// TestLegacyCallerLimit: the mux holds at most Options.MaxSSESessionsPerCaller streams of
// HTTP+SSE clients of one caller: the next is 429 (Retry-After, a JSON-RPC error naming the
// limit) while another caller still opens one; a stream that ends frees its place. The sessions
// of SSE targets a legacy session's initialize opens count for the caller that opened it.
func TestLegacyCallerLimit(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, func(o *mux.Options) { o.MaxSSESessionsPerCaller = 1 })
	ls := openLegacy(t, gw.url, as("alice"))
	resp := getAs(t, t.Context(), gw.url, "", "alice")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkCallerLimit(t, "alice's second stream", resp, string(body), "null")
	openLegacy(t, gw.url, as("bob"))

	// alice's legacy session initializes: its session of SSE target e is alice's (her one place
	// at the bridge), so her Streamable HTTP initialize is refused.
	if resp, body := postWith(t, origin(gw.url)+ls.endpoint, "", initBody, as("alice")); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("alice's legacy initialize: %d %s, want 202", resp.StatusCode, body)
	}
	if data := ls.next(t); !strings.Contains(data, `"serverInfo"`) {
		t.Fatalf("alice's legacy initialize answer %q: want a result", data)
	}
	resp, b := postWith(t, gw.url, "", initBody, as("alice"))
	checkCallerLimit(t, "alice's Streamable HTTP session, her legacy session holding one of e", resp, b, "1")

	// alice's stream ends: her place frees once the mux sees it.
	ls.cancel()
	waitFreed(t, "alice's stream after her first ended", gw.url, "", "alice")
}

// waitFreed GETs at url a stream of session sid ("": an HTTP+SSE client's) as caller until it is
// 200, as it is once the mux has seen the end of the caller's stream that held the place; any
// status but 429 before fails the test.
func waitFreed(t *testing.T, step, url, sid, caller string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := getAs(t, t.Context(), url, sid, caller)
		status := resp.StatusCode
		resp.Body.Close()
		if status == http.StatusOK {
			return
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("%s: %d, want 200 (429 until the mux sees the end)", step, status)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStreamCallerLimit: the mux holds at most Options.MaxSSESessionsPerCaller merged
// server-to-client streams of one caller, each of which holds a stream of every target: the
// caller's next GET (or subscriptions/listen) is 429 (Retry-After, a JSON-RPC error naming the
// limit) while another caller still opens one; a stream that ends frees its place.
func TestStreamCallerLimit(t *testing.T) {
	gw := newGatewayWith(t, contract.FailClosed, func(o *mux.Options) { o.MaxSSESessionsPerCaller = 1 }, targetA, targetB)
	sid := openAs(t, gw.url, "alice")
	ctx, cancel := context.WithCancel(t.Context())
	first := getAs(t, ctx, gw.url, sid, "alice")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("alice's GET: %d, want 200", first.StatusCode)
	}
	resp := getAs(t, t.Context(), gw.url, sid, "alice")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkCallerLimit(t, "alice's second GET", resp, string(body), "null")
	bob := getAs(t, t.Context(), gw.url, openAs(t, gw.url, "bob"), "bob")
	if bob.StatusCode != http.StatusOK {
		t.Errorf("bob's GET while alice holds her one: %d, want 200", bob.StatusCode)
	}
	bob.Body.Close()

	// alice's stream ends: her place frees once the mux sees it.
	cancel()
	first.Body.Close()
	waitFreed(t, "alice's GET after her first ended", gw.url, sid, "alice")

	t.Run("subscriptions/listen", func(t *testing.T) {
		// Requests without a caller are one caller.
		gw := newGatewayWith(t, contract.FailClosed, func(o *mux.Options) { o.MaxSSESessionsPerCaller = 1 }, targetModernA, targetModernB)
		listen := map[string]any{"notifications": map[string]any{"toolsListChanged": true}}
		if resp := postModern(t, gw.url, "subscriptions/listen", "", listen); resp.StatusCode != http.StatusOK {
			t.Fatalf("first subscriptions/listen: %d, want 200", resp.StatusCode)
		}
		resp := postModern(t, gw.url, "subscriptions/listen", "", map[string]any{"notifications": map[string]any{"toolsListChanged": true}})
		body, _ := io.ReadAll(resp.Body)
		checkCallerLimit(t, "second subscriptions/listen", resp, string(body), "1")
	})
}
