package double_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mcpgate/mcpgate/contract"
)

func TestStreamedRequestBody(t *testing.T) {
	var mu sync.Mutex
	var chunks []*extprocsvc.HttpBody
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if b := m.GetRequestBody(); b != nil {
			mu.Lock()
			chunks = append(chunks, b)
			mu.Unlock()
			return withCommon(m, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
				Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(strings.ToUpper(string(b.GetBody())))}}})
		}
		return nil
	}))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	streamed := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND, RequestBodyMode: extprocv3.ProcessingMode_STREAMED,
		ResponseHeaderMode: extprocv3.ProcessingMode_SKIP}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", perRoute(t, streamed)))), staticCluster("up", up.addr))

	// A body sent in two writes with a pause: the double sends each read as it arrives.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`"abc`))
		time.Sleep(100 * time.Millisecond)
		pw.Write([]byte(`def"`))
		pw.Close()
	}()
	resp, body := do(t, "POST", e.url("/"), pr)
	if resp.StatusCode != 200 || body != `{"echo":"ABCDEF"}` {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if up.last().header.Get("content-length") != "" {
		t.Error("content-length kept in STREAMED mode")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(chunks) < 2 || !chunks[len(chunks)-1].GetEndOfStream() || chunks[0].GetEndOfStream() {
		t.Errorf("chunks: %v", chunks)
	}
	if pc := e.ext.streams(t, 1)[0].messages()[0].GetProtocolConfig(); pc.GetRequestBodyMode() != extprocv3.ProcessingMode_STREAMED {
		t.Errorf("protocol_config %v", pc)
	}
}

func TestContinueAndReplace(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return withCommon(m, &extprocsvc.CommonResponse{Status: extprocsvc.CommonResponse_CONTINUE_AND_REPLACE,
				BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`"new body"`)}}})
		}
		return nil
	}))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))
	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`"old body"`))
	if resp.StatusCode != 200 || body != `{"echo":"new body"}` {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	// The request body is not sent to ext_proc after CONTINUE_AND_REPLACE.
	st := e.ext.streams(t, 1)[0]
	st.ended(t)
	if got := strings.Join(kinds(st.messages()), ","); got != "request_headers,response_headers,response_body" {
		t.Errorf("messages %s", got)
	}
}

func TestModeOverride(t *testing.T) {
	// ext_proc answers the response headers with mode_override response body NONE (mcpgate does so
	// for bodies that are not JSON-RPC); it applies only with allow_mode_override.
	for allow, want := range map[bool]string{
		true:  "request_headers,request_body,response_headers",
		false: "request_headers,request_body,response_headers,response_body",
	} {
		t.Run(map[bool]string{true: "allowed", false: "not allowed"}[allow], func(t *testing.T) {
			e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if m.GetResponseHeaders() != nil {
					r := continueFor(m)
					r.ModeOverride = &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_NONE}
					return r
				}
				return nil
			}))
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("plain")) })
			f := extProcFilter(5 * time.Second)
			f.AllowModeOverride = allow
			mcpSetup(t, e, up.addr, f)
			if resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`)); resp.StatusCode != 200 || body != "plain" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			st := e.ext.streams(t, 1)[0]
			st.ended(t)
			if got := strings.Join(kinds(st.messages()), ","); got != want {
				t.Errorf("messages %s, want %s", got, want)
			}
		})
	}
}

func TestUpstreamTLSWithSNIAndEDSRoundRobin(t *testing.T) {
	e := newEnv(t, answer(nil))
	var mu sync.Mutex
	var sni []string
	tlsUp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("tls")) }))
	tlsUp.TLS = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = append(sni, h.ServerName)
		mu.Unlock()
		return nil, nil
	}}
	tlsUp.StartTLS()
	t.Cleanup(tlsUp.Close)
	a, b := echo(t, "a"), echo(t, "b")

	l := listener(t, e.listen, nil, nil)
	tc := staticCluster("ai", tlsUp.Listener.Addr().String())
	tc.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: any_(t, &tlsv3.UpstreamTlsContext{Sni: "api.openai.example"})}}
	eds := edsCluster("svc")
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("ai", "/ai", "ai", nil), prefixRoute("svc", "/", "svc", nil))),
		tc, eds, assignment("svc", a.Listener.Addr().String(), b.Listener.Addr().String()))

	if resp, body := do(t, "GET", e.url("/ai"), nil); resp.StatusCode != 200 || body != "tls" {
		t.Fatalf("TLS upstream: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	if len(sni) != 1 || sni[0] != "api.openai.example" {
		t.Errorf("SNI %v", sni)
	}
	mu.Unlock()
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		resp, _ := do(t, "GET", e.url("/"), nil)
		seen[resp.Header.Get("x-upstream")]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Errorf("round robin over the EDS endpoints: %v", seen)
	}
}

func TestStrictDNSAndRedirect(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	_, port, _ := strings.Cut(a.Listener.Addr().String(), ":")
	dns := staticCluster("dns", "127.0.0.1:"+port)
	dns.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
	dns.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
	dns.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address = "localhost"
	l := listener(t, e.listen, nil, nil)
	redirect := &routev3.Route{Name: "redirect", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/old"}},
		Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new"},
			ResponseCode: routev3.RedirectAction_FOUND}}}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, redirect, prefixRoute("dns", "/", "dns", nil))), dns)
	if resp, body := do(t, "GET", e.url("/x"), nil); resp.StatusCode != 200 || body != "hello from a" {
		t.Errorf("STRICT_DNS localhost: %d %q", resp.StatusCode, body)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(e.url("/old/page?x=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("location") != "http://"+e.listen+"/new/page?x=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("location"))
	}
}

func TestAdmin(t *testing.T) {
	e := newEnv(t, answer(nil))
	admin := "http://" + e.d.AdminAddr
	resp, body := do(t, "GET", admin+"/ready", nil)
	if resp.StatusCode != 503 || strings.TrimSpace(body) != "PRE_INITIALIZING" {
		t.Errorf("before any configuration: %d %q", resp.StatusCode, body)
	}
	a := echo(t, "a")
	l := listener(t, e.listen, nil, nil)
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "a", nil))), staticCluster("a", a.Listener.Addr().String()))
	if resp, body := do(t, "GET", admin+"/ready", nil); resp.StatusCode != 200 || strings.TrimSpace(body) != "LIVE" {
		t.Errorf("ready: %d %q", resp.StatusCode, body)
	}
	// the bootstrap's static listener too, its Unix socket by its path (Envoy's PipeInstance)
	if _, body := do(t, "GET", admin+"/listeners", nil); strings.TrimSpace(body) != contract.MuxUpstreamListener+"::"+e.muxUpstream+"\n"+l.Name+"::"+e.listen {
		t.Errorf("listeners: %q", body)
	}
	if _, body := do(t, "GET", admin+"/config_dump", nil); !strings.Contains(body, `"dynamic_active_clusters"`) || !strings.Contains(body, l.Name) {
		t.Errorf("config_dump: %s", body)
	}
	if _, body := do(t, "GET", admin+"/server_info", nil); !strings.Contains(body, `"state": "LIVE"`) || !strings.Contains(body, gateway) {
		t.Errorf("server_info: %s", body)
	}
	if resp, _ := do(t, "POST", admin+"/quitquitquit", nil); resp.StatusCode != 200 {
		t.Errorf("quitquitquit: %d", resp.StatusCode)
	}
	select {
	case <-e.d.Quit():
	case <-time.After(5 * time.Second):
		t.Error("quitquitquit did not signal")
	}
}

func TestRouteTimeoutAndStreamIdleTimeout(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall-after-headers" {
			w.Header().Set("content-type", "text/event-stream")
			w.WriteHeader(200)
			w.Write([]byte("data: first\n\n"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	l := listener(t, e.listen, nil, nil)
	r := prefixRoute("r", "/", "up", nil)
	r.GetRoute().Timeout = durationpb.New(0)
	r.GetRoute().IdleTimeout = durationpb.New(300 * time.Millisecond)
	timeout := prefixRoute("timeout", "/timeout", "up", nil)
	timeout.GetRoute().Timeout = durationpb.New(200 * time.Millisecond)
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, timeout, r)), staticCluster("up", up.addr))

	// The route timeout: 504 "upstream request timeout", flag UT.
	if resp, body := do(t, "GET", e.url("/timeout"), nil); resp.StatusCode != 504 || body != "upstream request timeout" {
		t.Errorf("route timeout: got %d %q", resp.StatusCode, body)
	}
	if l := e.logs(1)[0]; l["response_flags"] != "UT" || l["details"] != "response_timeout" {
		t.Errorf("route timeout log %v", l)
	}
	// No response headers within idle_timeout, the request complete: 504 "stream timeout".
	if resp, body := do(t, "GET", e.url("/stall"), nil); resp.StatusCode != 504 || body != "stream timeout" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	// Headers sent, then silence: the stream is reset.
	resp, err := http.Get(e.url("/stall-after-headers"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(b) != "data: first\n\n" {
		t.Errorf("read %q, %v: want the first event then a reset", b, err)
	}
	for _, l := range e.logs(3)[1:] {
		if l["response_flags"] != "SI" || l["details"] != "stream_idle_timeout" {
			t.Errorf("log %v", l)
		}
	}
}

// TestRoundRobinIgnoresTheHashPolicy: a route that hashes the client's source address (as
// mcpgate's routes to MCP targets, and a rule mixing an MCP target and a plain Service) sends
// one client's requests to both hosts of an EDS cluster without lb_policy: Envoy's default
// ROUND_ROBIN (RoundRobinLoadBalancer: equal weights pick the hosts in turn) never reads the
// request's hash, which only RING_HASH (and weighted clusters' use_hash_policy) do. The same route
// to a RING_HASH cluster keeps the client on one host.
func TestRoundRobinIgnoresTheHashPolicy(t *testing.T) {
	e := newEnv(t, answer(nil))
	a, b := echo(t, "a"), echo(t, "b")
	l := listener(t, e.listen, nil, nil)
	bySource := []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
		ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}}
	rr, ring := prefixRoute("rr", "/rr", "rr", nil), prefixRoute("ring", "/ring", "ring", nil)
	rr.GetRoute().HashPolicy, ring.GetRoute().HashPolicy = bySource, bySource
	ringCluster := edsCluster("ring")
	ringCluster.LbPolicy = clusterv3.Cluster_RING_HASH
	addrs := []string{a.Listener.Addr().String(), b.Listener.Addr().String()}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, rr, ring)),
		edsCluster("rr"), assignment("rr", addrs...), ringCluster, assignment("ring", addrs...))
	for _, c := range []struct {
		path  string
		hosts int
	}{{"/rr", 2}, {"/ring", 1}} {
		seen := map[string]int{}
		for range 4 {
			resp, _ := do(t, "GET", e.url(c.path), nil)
			seen[resp.Header.Get("x-upstream")]++
		}
		if c.hosts == 2 && (seen["a"] != 2 || seen["b"] != 2) || c.hosts == 1 && len(seen) != 1 {
			t.Errorf("%s: one client's 4 requests reached %v, want %d host(s)", c.path, seen, c.hosts)
		}
	}
}

func TestRingHashIsStickyOnTheHashPolicy(t *testing.T) {
	e := newEnv(t, answer(nil))
	a, b := echo(t, "a"), echo(t, "b")
	l := listener(t, e.listen, nil, nil)
	r := prefixRoute("r", "/", "ring", nil)
	r.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
		Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "mcp-session-id"}}}}
	ring := edsCluster("ring")
	ring.LbPolicy = clusterv3.Cluster_RING_HASH
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, r)), ring, assignment("ring", a.Listener.Addr().String(), b.Listener.Addr().String()))
	used := map[string]bool{}
	for s := 0; s < 32; s++ {
		session := fmt.Sprintf("s%d", s)
		first := ""
		for i := 0; i < 3; i++ {
			resp, _ := do(t, "GET", e.url("/"), nil, "mcp-session-id", session)
			got := resp.Header.Get("x-upstream")
			if first == "" {
				first = got
			}
			if got != first {
				t.Errorf("session %s went to %s then %s", session, first, got)
			}
		}
		used[first] = true
	}
	// Sticky is not one endpoint for all: 32 sessions on one of two endpoints (chance 2^-31).
	if !used["a"] || !used["b"] {
		t.Errorf("sessions reached %v, want both endpoints", used)
	}
}
