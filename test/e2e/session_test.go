package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// fileSessions is testdata/e2e-sessions.yaml, a Gateway of its own beside the lab's.
const fileSessions = "e2e-sessions.yaml"

// serveTestdata writes testdata/NAME, its ${VARS} expanded, into the watched folder until the test
// ends (mcpgate starts a data plane for a Gateway of its own, and stops it when the file goes).
func serveTestdata(t *testing.T, name string, vars map[string]string) {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(os.Expand(string(data), func(k string) string { return vars[k] }))
	if err := env.lab.put(name, data); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.lab.remove(name); err != nil {
			t.Error(err)
		}
	})
}

// sourceAddrs are the addresses the test's clients connect from: on Linux the whole of
// 127.0.0.0/8 is the loopback's, so each is a client address of its own to the gateway.
func sourceAddrs() []netip.Addr {
	out := make([]netip.Addr, 16)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
	}
	return out
}

// rotatingClient is an HTTP client whose every request opens a new connection, from the next of
// sourceAddrs, starting at index first. Its log records where each request came from.
func rotatingClient(first int) (*http.Client, *clientLog) {
	log := &clientLog{addrs: sourceAddrs(), next: first}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: log.dial}
	return &http.Client{Transport: &tracingTransport{next: tr, log: log}}, log
}

// clientLog is the state of a rotatingClient.
type clientLog struct {
	addrs []netip.Addr
	mu    sync.Mutex
	next  int
	// sources are the source addresses of the requests, in order; opener is the one of the
	// request whose answer set the session id (initialize).
	sources []netip.Addr
	opener  netip.Addr
}

func (l *clientLog) dial(ctx context.Context, network, address string) (net.Conn, error) {
	l.mu.Lock()
	a := l.addrs[l.next%len(l.addrs)]
	l.next++
	l.mu.Unlock()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: a.AsSlice()}, Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, address)
}

// snapshot returns the requests' source addresses and the opener's.
func (l *clientLog) snapshot() ([]netip.Addr, netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]netip.Addr(nil), l.sources...), l.opener
}

// tracingTransport records each request's source address in its log.
type tracingTransport struct {
	next http.RoundTripper
	log  *clientLog
}

func (t *tracingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var src netip.Addr
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if a, ok := info.Conn.LocalAddr().(*net.TCPAddr); ok {
			src = a.AddrPort().Addr().Unmap()
		}
	}}
	resp, err := t.next.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
	if err != nil {
		return resp, err
	}
	t.log.mu.Lock()
	t.log.sources = append(t.log.sources, src)
	if r.Header.Get("Mcp-Session-Id") == "" && resp.Header.Get("Mcp-Session-Id") != "" {
		t.log.opener = src
	}
	t.log.mu.Unlock()
	return resp, nil
}

// pod is a stateful MCP server (go-sdk, Streamable HTTP) as one pod of a Deployment: its tool
// whoami answers with the pod's name and the session's id, and it counts each session's calls.
// A plain request for /plain gets 200 and the pod's name. Its answers carry x-pod, its name.
type pod struct {
	name  string
	srv   *httptest.Server
	mu    sync.Mutex
	calls map[string]int // session id → whoami calls
}

func startPod(t *testing.T, name string) *pod {
	p := &pod{name: name, calls: map[string]int{}}
	server := mcp.NewServer(&mcp.Implementation{Name: "pod-" + name, Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "names the pod and the session that answer"},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			id := req.Session.ID()
			p.mu.Lock()
			p.calls[id]++
			p.mu.Unlock()
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " " + id}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-pod", name)
		switch {
		case r.URL.Path == "/plain":
			fmt.Fprintln(w, name)
			return
		case strings.HasSuffix(r.URL.Path, "/proto"):
			fmt.Fprintln(w, r.Proto)
			return
		}
		h.ServeHTTP(w, r)
	}))
	// HTTP/1.1 and HTTP/2 over cleartext (prior knowledge), as a server behind a Service port
	// with appProtocol kubernetes.io/h2c speaks.
	p.srv.Config.Protocols = new(http.Protocols)
	p.srv.Config.Protocols.SetHTTP1(true)
	p.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

// sessionRun is what one client session saw.
type sessionRun struct {
	client  string       // the session id the client holds (the gateway's)
	pod, id string       // the pod and the server's session id every call named
	sources []netip.Addr // the source address of each of its requests
	opener  netip.Addr   // the source address of the request that opened the session
}

// runSession connects a go-sdk client whose connections come from sourceAddrs in turn, starting
// at index first, and calls whoami n times; every call must name the same pod and session.
func runSession(ctx context.Context, url string, first, n int) (sessionRun, error) {
	var run sessionRun
	client, seen := rotatingClient(first)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e-sessions", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: client}, nil)
	if err != nil {
		return run, fmt.Errorf("connect: %w", err)
	}
	run.client = cs.ID()
	for i := range n {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
		if err != nil || res.IsError || len(res.Content) != 1 {
			cs.Close()
			return run, fmt.Errorf("call %d: %+v, %v", i, res, err)
		}
		text, _ := res.Content[0].(*mcp.TextContent)
		pod, id, _ := strings.Cut(text.Text, " ")
		if i == 0 {
			run.pod, run.id = pod, id
		} else if pod != run.pod || id != run.id {
			cs.Close()
			return run, fmt.Errorf("call %d answered by pod %s in session %s; the first by pod %s in session %s", i, pod, id, run.pod, run.id)
		}
	}
	if err := cs.Close(); err != nil {
		return run, fmt.Errorf("close: %w", err)
	}
	run.sources, run.opener = seen.snapshot()
	return run, nil
}

// startSessions starts pods a and b and serves testdata/e2e-sessions.yaml on a free port until the
// test ends; base is the Gateway's URL.
func startSessions(t *testing.T) (a, b *pod, base string) {
	a, b = startPod(t, "a"), startPod(t, "b")
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileSessions, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "POD_A_PORT": portOf(a.srv), "POD_B_PORT": portOf(b.srv)})
	return a, b, "http://" + addr(free[0])
}

// TestSessionsStayOnTheirPod: a Service's EndpointSlices list two stateful MCP servers; go-sdk
// clients whose every HTTP request comes from another source address (16 in turn) open sessions
// through the gateway and call a tool many times. The routes' ring hash on the source address
// alone would send a session's requests to both servers (each session uses addresses the hash
// maps to each of them), and the server that does not hold the session answers 404. Envoy's
// stateful session envelope keeps each session on the server that opened it, which the ring hash
// chose for initialize; ext_proc still sees the server's own session id (audit and access log).
func TestSessionsStayOnTheirPod(t *testing.T) {
	a, b, base := startSessions(t)
	url := base + "/mcp"

	// Which pod the ring hash gives each source address: an initialize (no session yet) from each.
	addrs := sourceAddrs()
	podOf := map[netip.Addr]string{}
	for i, src := range addrs {
		eventually(t, "initialize from "+src.String()+" through the sessions Gateway", func() error {
			client, _ := rotatingClient(i) // its first connection comes from src
			req, err := http.NewRequest("POST", url, strings.NewReader(initializeBody))
			if err != nil {
				return err
			}
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("x-pod") == "" {
				return fmt.Errorf("initialize: %s from pod %q", resp.Status, resp.Header.Get("x-pod"))
			}
			podOf[src] = resp.Header.Get("x-pod")
			return nil
		})
	}
	perPod := map[string]int{}
	for _, p := range podOf {
		perPod[p]++
	}
	if len(perPod) != 2 {
		t.Fatalf("the ring hash sends all %d source addresses to one pod (%v): the test cannot show anything", len(addrs), perPod)
	}

	const sessions, calls = 6, 16
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runs := make([]sessionRun, sessions)
	errs := make([]error, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() { runs[i], errs[i] = runSession(ctx, url, i, calls) })
	}
	wg.Wait()
	ids := map[string]bool{}
	for i, run := range runs {
		if errs[i] != nil {
			t.Errorf("session %d: %v", i, errs[i])
			continue
		}
		ids[run.id] = true
		hashPods := map[string]bool{}
		for _, src := range run.sources {
			hashPods[podOf[src]] = true
		}
		if len(hashPods) != 2 {
			t.Errorf("session %d: its %d requests came from addresses the hash maps to %v only, want both pods", i, len(run.sources), hashPods)
		}
		if want := podOf[run.opener]; run.pod != want {
			t.Errorf("session %d lives on pod %s; its initialize came from %s, which the ring hash maps to pod %s", i, run.pod, run.opener, want)
		}
		// The client holds Envoy's envelope (the host, then "UV:" and the value it wraps) of the
		// server's id sealed by ext_proc for the caller.
		var sealed []byte
		for part := range strings.SplitSeq(run.client, ";") {
			if v, ok := strings.CutPrefix(part, "UV:"); ok {
				sealed, _ = base64.StdEncoding.DecodeString(v)
			}
		}
		if id, err := env.serverSession(string(sealed)); err != nil || id != run.id {
			t.Errorf("session %d: the client holds session id %q, want the gateway's envelope of the server's %q sealed (%v)", i, run.client, run.id, err)
		}
	}
	if t.Failed() {
		return
	}
	// Server side: each session's calls all reached the pod that holds it.
	for id := range ids {
		a.mu.Lock()
		b.mu.Lock()
		na, nb := a.calls[id], b.calls[id]
		b.mu.Unlock()
		a.mu.Unlock()
		if (na != calls || nb != 0) && (nb != calls || na != 0) {
			t.Errorf("session %s: %d calls on pod a, %d on pod b; want all %d on one", id, na, nb, calls)
		}
	}
	// ext_proc saw the server's session ids: the audit lines and the access log name them.
	eventually(t, "audit and access-log lines of every call with the server's session id", func() error {
		lines, err := jsonLines(env.stdoutLog())
		if err != nil {
			return err
		}
		audited, logged := map[string]int{}, map[string]int{}
		for _, l := range lines {
			if l["request_id"] == nil && l["method"] == "tools/call" && l["tool"] == "whoami" {
				audited[fmt.Sprint(l["session"])]++
			}
			md, _ := l["mcpgate"].(map[string]any)
			if l["request_id"] != nil && md["method"] == "tools/call" && md["tool"] == "whoami" {
				logged[fmt.Sprint(md["session"])]++
			}
		}
		for _, got := range []map[string]int{audited, logged} {
			for id := range ids {
				if got[id] != calls {
					return fmt.Errorf("audit lines by session %v, access-log lines by session %v: want %d of each of the servers' sessions %v", audited, logged, calls, ids)
				}
			}
			if len(got) != len(ids) {
				return fmt.Errorf("audit lines by session %v, access-log lines by session %v: sessions other than the servers' %v", audited, logged, ids)
			}
		}
		return nil
	})
}

// TestPlainServicePortIsBalancedPerRequest: the sessions Gateway's Service also has a plain HTTP
// port (no MCP appProtocol) on the same two servers. One client's requests to it, from one source
// address on one connection (one Envoy worker), reach both: a plain Service is balanced per
// request (Envoy's default round robin), not by the client's source address as MCP targets are.
// Before, every Service port's cluster was a ring hash on the source address, and all clients
// behind one NAT or L7 load balancer reached one pod.
func TestPlainServicePortIsBalancedPerRequest(t *testing.T) {
	_, _, base := startSessions(t)
	url := base + "/plain"
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if pod := resp.Header.Get("x-pod"); resp.StatusCode != http.StatusOK || pod == "" || strings.TrimSpace(string(body)) != pod {
			return "", fmt.Errorf("GET %s: %s from pod %q: %q", url, resp.Status, pod, body)
		}
		return resp.Header.Get("x-pod"), nil
	}
	eventually(t, "GET /plain through the sessions Gateway", func() error {
		_, err := get()
		return err
	})
	const n = 6
	seen := map[string]int{}
	for range n {
		pod, err := get()
		if err != nil {
			t.Fatal(err)
		}
		seen[pod]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("one client's %d requests to a plain Service port reached pods %v, want both", n, seen)
	}
}

// TestH2CServicePort: Gateway API's backend protocol selection (GEP-1911): Envoy speaks HTTP/2
// over cleartext to a Service port with appProtocol kubernetes.io/h2c, and HTTP/1.1 to one
// without an appProtocol, on the same servers.
func TestH2CServicePort(t *testing.T) {
	_, _, base := startSessions(t)
	for path, want := range map[string]string{"/h2c/proto": "HTTP/2.0", "/plain/proto": "HTTP/1.1"} {
		eventually(t, "GET "+path+" through the sessions Gateway", func() error {
			resp, err := http.Get(base + path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if got := strings.TrimSpace(string(body)); resp.StatusCode != http.StatusOK || got != want {
				return fmt.Errorf("%s: the server saw %q (%s), want %s", path, got, resp.Status, want)
			}
			return nil
		})
	}
}
