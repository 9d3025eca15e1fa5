package mux_test

import (
	"bytes"
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

// lingerTarget is a Streamable HTTP target that answers each request after initialize in an
// event stream it then keeps open, sending nothing more, until the request ends (MCP says a
// server SHOULD close the stream after the answer: not every one does). ended receives the end of
// each such request.
func lingerTarget(ended chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &msg)
		result := `{"content":[{"type":"text","text":"lingered"}]}`
		switch {
		case r.Method != http.MethodPost:
			http.Error(w, "no GET stream", http.StatusMethodNotAllowed)
			return
		case msg.ID == nil:
			w.WriteHeader(http.StatusAccepted)
			return
		case msg.Method == "initialize":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Mcp-Session-Id", "linger-1")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"l","version":"1"}}}`)
			return
		case msg.Method == "tools/list":
			result = `{"tools":[{"name":"x","inputSchema":{"type":"object"}}]}`
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message\ndata: "+`{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":`+result+"}\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		ended <- msg.Method
	})
}

// TestAnswerStreamEndsAtAnswer: a target that keeps its event stream open after its answer holds
// neither the client's answer nor its own request: a call's event stream (relayed) ends once the
// answer is relayed, a list (read whole, merged) is answered at once, not at the target timeout,
// and the target's requests end.
func TestAnswerStreamEndsAtAnswer(t *testing.T) {
	linger := contract.MuxTarget{Name: "l", Cluster: "cluster-linger", Path: "/mcp"}
	// A target timeout that the test would not outlive: the list must not wait for it.
	gw := newGatewayWith(t, "FailClosed", func(o *mux.Options) { o.TargetTimeout = time.Hour }, targetA, linger)
	ended := make(chan string, 4)
	gw.double.mu.Lock()
	gw.double.clusters["cluster-linger"] = lingerTarget(ended)
	gw.double.mu.Unlock()
	sid, _ := openRaw(t, gw.url)

	for _, tc := range []struct{ method, body, want string }{
		{"tools/call", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"l_x","arguments":{}}}`, `"text":"lingered"`},
		{"tools/list", `{"jsonrpc":"2.0","id":8,"method":"tools/list"}`, `"name":"l_x"`},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // on failure: the client goes, and with it the request
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw.url, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		read := make(chan []byte, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				read <- []byte(err.Error())
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			read <- b
		}()
		select {
		case b := <-read:
			if !bytes.Contains(b, []byte(tc.want)) {
				t.Errorf("%s: answer %s, want %s", tc.method, b, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the answer did not end: the mux holds it as long as the target holds its stream", tc.method)
		}
		select {
		case m := <-ended:
			if m != tc.method {
				t.Errorf("the target's %s request ended, want its %s", m, tc.method)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the target's request did not end after its answer", tc.method)
		}
	}
}
