package double_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/mcpgate/mcpgate/contract"
)

// headerRecorder is an upstream that answers 200 and keeps the request headers it got.
type headerRecorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func recordHeaders(t *testing.T) *headerRecorder {
	h := &headerRecorder{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, r.Header.Clone())
		h.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *headerRecorder) last() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		return nil
	}
	return h.seen[len(h.seen)-1]
}

// TestMuxHops: the two hops of a multiplexed MCP backend, as the translator and the bootstrap
// emit them. The front route's request_headers_to_add (x-mcpgate-mux, OVERWRITE_IF_EXISTS_OR_ADD)
// replaces the client's value on the way to the upstream (the mux), and ext_proc, an HTTP filter
// before the router that applies route headers, sees the client's only. The bootstrap's mux
// upstream listener, on a Unix socket, routes by the exact x-mcpgate-cluster, which its route
// removes before the target; a request naming no route's cluster gets 404 NR. ext_proc's header
// mutation at the request headers (mcpgate's x-mcpgate-mux-auth, the secret it shares with the
// mux) replaces the client's value too.
func TestMuxHops(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetRequestHeaders() == nil {
			return nil
		}
		return withCommon(m, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
			{Header: &corev3.HeaderValue{Key: contract.HeaderMuxAuth, RawValue: []byte("the-secret")}}}}})
	}))
	mux, a, b := recordHeaders(t), recordHeaders(t), recordHeaders(t)
	l := listener(t, e.listen, extProcFilter(5e9), nil)
	front := prefixRoute("front", "/mcp", "mux", // the bootstrap's mcpgate_mux in mcpgate
		perRoute(t, nil, contract.MetadataTargets, "a,b"))
	front.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: contract.HeaderMux, Value: `{"gateway":"ns/gw"}`},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}}
	byCluster := func(cluster string) *routev3.Route {
		r := prefixRoute(contract.MuxUpstreamRoutes+"/"+cluster, "/", cluster, nil)
		r.Match.Headers = []*routev3.HeaderMatcher{{Name: contract.HeaderMuxCluster, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: cluster}}}}}
		r.RequestHeadersToRemove = []string{contract.HeaderMuxCluster}
		return r
	}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, front)),
		routeConfig(contract.MuxUpstreamRoutes, vhost(contract.MuxUpstreamRoutes, []string{"*"}, byCluster("target/a"), byCluster("target/b"))),
		staticCluster("mux", mux.Listener.Addr().String()),
		staticCluster("target/a", a.Listener.Addr().String()), staticCluster("target/b", b.Listener.Addr().String()))

	resp, _ := do(t, "GET", e.url("/mcp"), nil, contract.HeaderMux, "forged", contract.HeaderMuxAuth, "forged")
	if resp.StatusCode != 200 || mux.last().Values(contract.HeaderMux)[0] != `{"gateway":"ns/gw"}` || len(mux.last().Values(contract.HeaderMux)) != 1 {
		t.Fatalf("front hop: %d, the mux got %s %q", resp.StatusCode, contract.HeaderMux, mux.last().Values(contract.HeaderMux))
	}
	if v := mux.last().Values(contract.HeaderMuxAuth); len(v) != 1 || v[0] != "the-secret" {
		t.Errorf("the mux got %s %q, want ext_proc's value only", contract.HeaderMuxAuth, v)
	}
	rh := e.ext.streams(t, 1)[0].messages()[0].GetRequestHeaders().GetHeaders()
	if v, _ := header(rh, contract.HeaderMux); v != "forged" {
		t.Errorf("ext_proc saw %s %q, want the client's (route headers are the router's)", contract.HeaderMux, v)
	}

	unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.muxUpstream)
	}}}
	send := func(cluster string) int {
		req, _ := http.NewRequest("POST", "http://gw/target-path", strings.NewReader("{}"))
		if cluster != "" {
			req.Header.Set(contract.HeaderMuxCluster, cluster)
		}
		resp, err := unix.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		cluster string
		up      *headerRecorder
	}{{"target/a", a}, {"target/b", b}} {
		if code := send(c.cluster); code != 200 || c.up.last() == nil || c.up.last().Get(contract.HeaderMuxCluster) != "" {
			t.Errorf("%s: %d, the target got %v", c.cluster, code, c.up.last())
		}
	}
	for _, cluster := range []string{"target", "target/c", ""} {
		if code := send(cluster); code != 404 {
			t.Errorf("%s %q: %d, want 404 (no route)", contract.HeaderMuxCluster, cluster, code)
		}
	}
	if n := len(a.seen) + len(b.seen); n != 2 {
		t.Errorf("the targets got %d requests, want 2", n)
	}
}
