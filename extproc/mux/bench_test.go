package mux_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	mcpx "github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// benchTarget is a double of a target behind Envoy's mux upstream listener that costs next to
// nothing: it answers a tools/list with listed tools (with the request's id, which the mux
// makes per page) and anything else with a fixed tools/call result for id 1 (the benchmark's
// calls all have it), as JSON or, when sse, as an event stream of one event.
type benchTarget struct {
	list, call []byte
	sse        bool
}

func newBenchTarget(listed int, sse bool) *benchTarget {
	return newBenchTargetNamed(listed, sse, "")
}

// newBenchTargetNamed is newBenchTarget whose tools' names start with prefix.
func newBenchTargetNamed(listed int, sse bool, prefix string) *benchTarget {
	tools := make([]string, listed)
	for i := range tools {
		tools[i] = fmt.Sprintf(`{"name":"%stool%d","description":"a tool of the double","inputSchema":{"type":"object"}}`, prefix, i)
	}
	call := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}`)
	if sse {
		call = []byte("event: message\ndata: " + string(call) + "\n\n")
	}
	return &benchTarget{
		list: []byte(`,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`),
		call: call,
		sse:  sse,
	}
}

var toolsListMethod = []byte(`"tools/list"`)

func (d *benchTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if bytes.Contains(body, toolsListMethod) {
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		json.Unmarshal(body, &m)
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(append([]byte(`{"jsonrpc":"2.0","id":`), m.ID...), d.list...))
		return
	}
	if d.sse {
		w.Header().Set("Content-Type", "text/event-stream")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Write(d.call)
}

// serveUnix serves h on a new Unix socket and returns its path.
func serveUnix(tb testing.TB, h http.Handler) string {
	tb.Helper()
	sock, _ := serveUnixServer(tb, h)
	return sock
}

// serveUnixServer is serveUnix that also returns the server.
func serveUnixServer(tb testing.TB, h http.Handler) (string, *http.Server) {
	tb.Helper()
	sock := filepath.Join(tb.TempDir(), "s.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(lis)
	tb.Cleanup(func() { srv.Close() })
	return sock, srv
}

// unixClient returns an HTTP client of the Unix socket sock.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// BenchmarkMux measures the mux's own cost: a tools/call routed to one target (its answer JSON or
// an event stream, with or without an event id, which the mux re-encodes as its own) and a tools/list merged over 2 and 4 targets, each target a benchTarget (10
// tools) behind one upstream socket, the mux served on a Unix socket as Envoy reaches it; under
// prefixMode Never a call routed by the target header and a list tagged with _meta targets
// (each target's tools named after it: none shared); under Bridge (one target passed through) a
// call to a Streamable HTTP target and to an HTTP+SSE one through the SSE bridge (a
// benchSSETarget); and the floor, the same request sent
// straight to one target's double on its socket. Both count the client's and the double's work
// as well, the same in both. BenchmarkResolve measures what a Never call adds at the front hop.
func BenchmarkMux(b *testing.B) {
	const listed = 10
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","arguments":{"text":"hello"}}}`
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	for _, c := range []struct {
		name       string
		targets    int
		sse        bool
		body       string
		prefixMode string
		// eventIDs: the targets' events have ids (the mux gives the client its own, EventIDPrefix).
		eventIDs bool
	}{
		{"call-json/targets=2", 2, false, call, "Conditional", false},
		{"call-sse/targets=2", 2, true, call, "Conditional", false},
		{"call-sse-ids/targets=2", 2, true, call, "Conditional", true},
		{"list/targets=2", 2, false, list, "Conditional", false},
		{"list/targets=4", 4, false, list, "Conditional", false},
		{"never-call-json/targets=2", 2, false, call, contract.PrefixModeNever, false},
		{"never-list/targets=2", 2, false, list, contract.PrefixModeNever, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			bm := newBenchMux(b, c.targets, c.sse, c.prefixMode)
			if c.eventIDs {
				for _, d := range bm.doubles {
					d.call = append([]byte("id: 5QWOCTFJ7XVBNCPHNGDNJJYLW2_1\n"), d.call...)
				}
			}
			headers := map[string]string{
				contract.HeaderMux:     bm.header,
				contract.HeaderMuxAuth: benchSecret,
				"Mcp-Session-Id":       bm.session,
			}
			if c.prefixMode == contract.PrefixModeNever {
				headers[contract.HeaderMuxTarget] = "a"
			}
			run(b, unixClient(serveUnix(b, bm.mux)), c.body, headers)
		})
	}
	// Under Bridge (one target, passed through) a call to a Streamable HTTP target and to an
	// HTTP+SSE one (the SSE bridge: the POST to its endpoint, the answer from its GET stream).
	for _, sseTarget := range []bool{false, true} {
		name := "bridge-call-json/streamable-target"
		if sseTarget {
			name = "bridge-call-json/sse-target"
		}
		b.Run(name, func(b *testing.B) {
			hc, headers := newBridgeBench(b, sseTarget)
			run(b, hc, call, headers)
		})
	}
	for _, c := range []struct {
		name string
		sse  bool
		body string
	}{
		{"floor/call-json", false, call},
		{"floor/call-sse", true, call},
		{"floor/list", false, list},
	} {
		b.Run(c.name, func(b *testing.B) {
			up := serveUnix(b, newBenchTarget(listed, c.sse))
			run(b, unixClient(up), c.body, map[string]string{"Mcp-Session-Id": "session-a"})
		})
	}
}

// benchSSETarget is a double of an HTTP+SSE target that costs next to nothing: a GET opens a
// session's stream (its endpoint event, then the answers); a POST to the endpoint is answered 202
// and its answer (to initialize, or the fixed tools/call result, with the request's id) goes on the
// stream.
type benchSSETarget struct {
	mu      sync.Mutex
	streams map[string]chan []byte
}

func (d *benchSSETarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		ch := make(chan []byte, 64)
		d.mu.Lock()
		id := strconv.Itoa(len(d.streams))
		d.streams[id] = ch
		d.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: endpoint\ndata: /mcp?session=%s\n\n", id)
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-ch:
				w.Write(ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}
	body, _ := io.ReadAll(r.Body)
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	json.Unmarshal(body, &m)
	d.mu.Lock()
	ch := d.streams[r.URL.Query().Get("session")]
	d.mu.Unlock()
	if ch == nil {
		http.Error(w, "session not found", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	if m.ID == nil {
		return
	}
	result := `{"content":[{"type":"text","text":"hello"}]}`
	if m.Method == "initialize" {
		result = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"sse","version":"1"}}`
	}
	ch <- []byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":" + string(m.ID) + ",\"result\":" + result + "}\n\n")
}

// newBridgeBench serves a mux of one target a under Bridge, a benchTarget (JSON answers) or, with
// sse, a benchSSETarget, and returns its client and a session's headers.
func newBridgeBench(b *testing.B, sse bool) (*http.Client, map[string]string) {
	target := contract.MuxTarget{Name: "a", Cluster: "cluster-a", Path: "/mcp"}
	var h http.Handler = newBenchTarget(10, false)
	if sse {
		target.Protocol = contract.TransportSSE
		h = &benchSSETarget{streams: map[string]chan []byte{}}
	}
	up := serveUnix(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(contract.HeaderMuxCluster)
		h.ServeHTTP(w, r)
	}))
	desc, _ := json.Marshal(contract.Mux{Gateway: "ns/gw", Backend: "ns/be", Bridge: true, Targets: []contract.MuxTarget{target}})
	m := mux.New(mux.Options{Upstream: func(string) string { return "unix://" + up }, Secret: benchSecret})
	b.Cleanup(m.Close)
	hc := unixClient(serveUnix(b, m))
	headers := map[string]string{contract.HeaderMux: string(desc), contract.HeaderMuxAuth: benchSecret}
	sid, _ := json.Marshal(map[string]any{"backend": "ns/be", "targets": map[string]string{"a": "session-a"}})
	headers["Mcp-Session-Id"] = base64.RawURLEncoding.EncodeToString(sid)
	if sse {
		req, _ := http.NewRequest(http.MethodPost, "http://mcpgate/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range headers {
			if k != "Mcp-Session-Id" {
				req.Header.Set(k, v)
			}
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		drainBody(resp)
		if headers["Mcp-Session-Id"] = resp.Header.Get("Mcp-Session-Id"); resp.StatusCode != http.StatusOK || headers["Mcp-Session-Id"] == "" {
			b.Fatalf("initialize through the bridge: %d, no session", resp.StatusCode)
		}
	}
	return hc, headers
}

// drainBody reads a response whole and closes it.
func drainBody(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// benchMux is a mux of targets benchTarget doubles (of 10 tools, under prefixMode Never named
// after their target) and a session of it.
type benchMux struct {
	mux             *mux.Server
	header, session string
	// upstream is the mux's Options.Upstream.
	upstream func(string) string
	// doubles are the targets' doubles, by cluster.
	doubles map[string]*benchTarget
}

func newBenchMux(b *testing.B, targets int, sse bool, prefixMode string) *benchMux {
	doubles := map[string]*benchTarget{}
	desc := contract.Mux{Gateway: "ns/gw", Backend: "ns/be", PrefixMode: prefixMode, FailureMode: "FailClosed"}
	ids := map[string]string{}
	for i := range targets {
		name := string(rune('a' + i))
		cluster := "cluster-" + name
		desc.Targets = append(desc.Targets, contract.MuxTarget{Name: name, Cluster: cluster, Path: "/mcp"})
		ids[name] = "session-" + name
		prefix := ""
		if prefixMode == contract.PrefixModeNever {
			prefix = name
		}
		doubles[cluster] = newBenchTargetNamed(10, sse, prefix)
	}
	// The upstream listener's route by cluster, as a map.
	up := serveUnix(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := doubles[r.Header.Get(contract.HeaderMuxCluster)]
		r.Header.Del(contract.HeaderMuxCluster)
		d.ServeHTTP(w, r)
	}))
	header, _ := json.Marshal(desc)
	sid, _ := json.Marshal(map[string]any{"backend": desc.Backend, "targets": ids})
	upstream := func(string) string { return "unix://" + up }
	return &benchMux{mux: mux.New(mux.Options{Upstream: upstream, Secret: benchSecret}),
		header: string(header), session: base64.RawURLEncoding.EncodeToString(sid), upstream: upstream, doubles: doubles}
}

// BenchmarkResolve measures Resolve, what a call under prefixMode Never costs the front hop before
// it is judged: a tools/list of every target of the session (10 tools each, one page) through
// the upstream socket, for a name the last target serves; "cached": the same with the resolve
// cache on (Options.ResolveCacheTTL), every call but the first answered from it.
func BenchmarkResolve(b *testing.B) {
	for _, c := range []struct {
		targets int
		cached  bool
	}{{2, false}, {4, false}, {2, true}, {4, true}} {
		name := fmt.Sprintf("targets=%d", c.targets)
		if c.cached {
			name = "cached/" + name
		}
		b.Run(name, func(b *testing.B) {
			bm := newBenchMux(b, c.targets, false, contract.PrefixModeNever)
			if c.cached {
				bm.mux = mux.New(mux.Options{Upstream: bm.upstream, Secret: benchSecret, ResolveCacheTTL: time.Hour})
			}
			last := string(rune('a' + c.targets - 1))
			q := mux.Query{Mux: bm.header, Session: bm.session, Header: http.Header{"Mcp-Protocol-Version": {"2025-06-18"}},
				ID: json.RawMessage(`1`), Item: mcpx.Tool, Name: last + "tool9"}
			b.ReportAllocs()
			for b.Loop() {
				if target, err := bm.mux.Resolve(context.Background(), q); err != nil || target != last {
					b.Fatalf("Resolve = %q, %v; want %s", target, err, last)
				}
			}
		})
	}
}

// benchSecret is as long as cmd/mcpgate's (32 random bytes, base64url).
const benchSecret = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"

// run posts body b.N times through hc with headers and reads each answer whole.
func run(b *testing.B, hc *http.Client, body string, headers map[string]string) {
	b.Helper()
	do := func() []byte {
		req, _ := http.NewRequest(http.MethodPost, "http://mcpgate/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%d %s: %v", resp.StatusCode, out, err)
		}
		return out
	}
	if out := do(); !bytes.Contains(out, []byte(`"result"`)) || bytes.Contains(out, []byte(`"error"`)) {
		b.Fatalf("answer %s: want a result", out)
	}
	b.ReportAllocs()
	for b.Loop() {
		do()
	}
}
