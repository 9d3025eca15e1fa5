package double_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	statefulv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	envelopev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/stateful_session/envelope/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const statefulName = "envoy.filters.http.stateful_session"

// envelopeSession is a StatefulSession with the envelope session state on header.
func envelopeSession(t *testing.T, header string) *statefulv3.StatefulSession {
	return &statefulv3.StatefulSession{SessionState: &corev3.TypedExtensionConfig{Name: "envoy.http.stateful_session.envelope",
		TypedConfig: any_(t, &envelopev3.EnvelopeSessionState{Header: &envelopev3.EnvelopeSessionState_Header{Name: header}})}}
}

// statefulFilter is the HCM filter with cfg.
func statefulFilter(t *testing.T, cfg *statefulv3.StatefulSession) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: statefulName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: any_(t, cfg)}}
}

// withStateful puts the stateful session filter at position i of the chain.
func withStateful(t *testing.T, cfg *statefulv3.StatefulSession, i int) func(*hcmv3.HttpConnectionManager, *listenerv3.Listener) {
	return func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
		h.HttpFilters = append(h.HttpFilters[:i], append([]*hcmv3.HttpFilter{statefulFilter(t, cfg)}, h.HttpFilters[i:]...)...)
	}
}

func statefulPerRoute(t *testing.T, pr *statefulv3.StatefulSessionPerRoute) map[string]*anypb.Any {
	return map[string]*anypb.Any{statefulName: any_(t, pr)}
}

func sessionEnabled(t *testing.T) map[string]*anypb.Any {
	return statefulPerRoute(t, &statefulv3.StatefulSessionPerRoute{Override: &statefulv3.StatefulSessionPerRoute_StatefulSession{
		StatefulSession: envelopeSession(t, "Mcp-Session-Id")}})
}

func sessionDisabled(t *testing.T) map[string]*anypb.Any {
	return statefulPerRoute(t, &statefulv3.StatefulSessionPerRoute{Override: &statefulv3.StatefulSessionPerRoute_Disabled{Disabled: true}})
}

// sessionServer is an upstream holding sessions: a request without mcp-session-id opens one
// (answered with its id), a request with one answers with the same id, 404 when this server
// does not know it (as an MCP server does). x-upstream names the server, x-seen-session what it
// received.
func sessionServer(t *testing.T, name string) *httptest.Server {
	var n atomic.Int64
	var mu sync.Mutex
	known := map[string]bool{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-upstream", name)
		got := r.Header.Values("mcp-session-id")
		w.Header().Set("x-seen-session", strings.Join(got, "|"))
		mu.Lock()
		defer mu.Unlock()
		switch {
		case len(got) == 0:
			id := fmt.Sprintf("%s-%d", name, n.Add(1))
			known[id] = true
			w.Header().Set("mcp-session-id", id)
		case known[got[0]]:
			w.Header().Set("mcp-session-id", got[0])
			if r.Header.Get("x-twice") != "" {
				w.Header().Add("mcp-session-id", got[0])
			}
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// openEnvelope splits an envelope into its host and upstream value, failing the test when the
// value is not one.
func openEnvelope(t *testing.T, v string) (host, value string) {
	t.Helper()
	h, uv, ok := strings.Cut(v, ";UV:")
	hb, err1 := base64.StdEncoding.DecodeString(h)
	vb, err2 := base64.StdEncoding.DecodeString(uv)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("session header %q is not an envelope base64(host);UV:base64(value)", v)
	}
	return string(hb), string(vb)
}

// TestStatefulSessionEnvelopeKeepsSessionsOnTheirHost reproduces Envoy's stateful session filter
// with the envelope session state: the upstream's session header comes back as
// base64(host);UV:base64(value), a request carrying it goes to that host whatever the load
// balancer would pick and with the upstream's own value; values that are not envelopes pass
// unchanged, an unknown host falls back to the load balancer; per-route configs enable and
// disable it, the most specific winning.
func TestStatefulSessionEnvelopeKeepsSessionsOnTheirHost(t *testing.T) {
	e := newEnv(t, answer(nil))
	a, b := sessionServer(t, "a"), sessionServer(t, "b")
	addr := map[string]string{"a": a.Listener.Addr().String(), "b": b.Listener.Addr().String()}
	// The filter's own config has no session state (it does nothing); routes enable it.
	l := listener(t, e.listen, nil, withStateful(t, &statefulv3.StatefulSession{}, 0))
	mcp := prefixRoute("mcp", "/mcp", "pods", sessionEnabled(t))
	plain := prefixRoute("plain", "/plain", "pods", nil)
	split := weightedRoute("split", "/split", &routev3.WeightedCluster_ClusterWeight{Name: "pods", Weight: wrapperspb.UInt32(1),
		TypedPerFilterConfig: sessionDisabled(t)})
	split.TypedPerFilterConfig = sessionEnabled(t)
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, mcp, plain, split)), edsCluster("pods"), assignment("pods", addr["a"], addr["b"]))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}

	// Sessions open on both pods (round robin) and each stays on its own.
	used := map[string]bool{}
	for s := 0; s < 4; s++ {
		resp, _ := do(t, "POST", e.url("/mcp"), nil)
		env := resp.Header.Get("mcp-session-id")
		host, id := openEnvelope(t, env)
		pod := resp.Header.Get("x-upstream")
		if host != addr[pod] || !strings.HasPrefix(id, pod+"-") {
			t.Fatalf("envelope %q names %s with %q; %s answered", env, host, id, pod)
		}
		used[pod] = true
		for i := 0; i < 5; i++ {
			resp, _ := do(t, "POST", e.url("/mcp"), nil, "mcp-session-id", env)
			if resp.StatusCode != 200 || resp.Header.Get("x-upstream") != pod || resp.Header.Get("x-seen-session") != id {
				t.Fatalf("session %s request %d: %d from %q which received %q, want 200 from %s with %q", id, i,
					resp.StatusCode, resp.Header.Get("x-upstream"), resp.Header.Get("x-seen-session"), pod, id)
			}
			if got := resp.Header.Get("mcp-session-id"); got != env {
				t.Errorf("answer's session header %q, want the same envelope %q", got, env)
			}
		}
	}
	if !used["a"] || !used["b"] {
		t.Errorf("sessions opened on %v, want both pods", used)
	}

	// A response with the header twice is left alone (onUpdate wants exactly one).
	resp, _ := do(t, "POST", e.url("/mcp"), nil)
	env := resp.Header.Get("mcp-session-id")
	_, id := openEnvelope(t, env)
	resp, _ = do(t, "POST", e.url("/mcp"), nil, "mcp-session-id", env, "x-twice", "1")
	if got := resp.Header.Values("mcp-session-id"); len(got) != 2 || got[0] != id || got[1] != id {
		t.Errorf("repeated response header: %q, want the upstream's two values untouched", got)
	}

	// Values that are not envelopes, or name no known host: header handling as Envoy's parseAddress.
	cases := []struct {
		name, value, seen string
		// pinned: the request must reach the envelope's pod (else the load balancer picks).
		pinned string
	}{
		{name: "plain value", value: id, seen: id},
		{name: "no UV part", value: b64(addr["a"]), seen: b64(addr["a"])},
		{name: "UV not base64", value: b64(addr["a"]) + ";UV:%%%%", seen: b64(addr["a"]) + ";UV:%%%%"},
		{name: "UV without padding", value: b64(addr["a"]) + ";UV:" + strings.TrimRight(b64("a-1x"), "="), seen: b64(addr["a"]) + ";UV:" + strings.TrimRight(b64("a-1x"), "=")},
		{name: "empty UV", value: b64(addr["a"]) + ";UV:", seen: b64(addr["a"]) + ";UV:"},
		{name: "host not base64", value: "not-base64;UV:" + b64("x"), seen: "x"},
		{name: "unknown host", value: b64("127.0.0.1:1") + ";UV:" + b64("x"), seen: "x"},
		{name: "extra parts and empty ones", value: ";" + b64(addr["b"]) + ";;other;UV:" + b64("b-1") + ";UV:" + b64("zz"), seen: "b-1", pinned: "b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pods := map[string]bool{}
			for i := 0; i < 4; i++ {
				resp, _ := do(t, "POST", e.url("/mcp"), nil, "mcp-session-id", c.value)
				if got := resp.Header.Get("x-seen-session"); got != c.seen {
					t.Errorf("upstream received %q, want %q", got, c.seen)
				}
				pods[resp.Header.Get("x-upstream")] = true
			}
			switch {
			case c.pinned != "" && (len(pods) != 1 || !pods[c.pinned]):
				t.Errorf("requests reached %v, want only %s", pods, c.pinned)
			case c.pinned == "" && len(pods) != 2:
				t.Errorf("requests reached %v, want the load balancer's round robin over both", pods)
			}
		})
	}

	// Without a per-route config the filter has no session state: nothing is touched.
	resp, _ = do(t, "POST", e.url("/plain"), nil, "mcp-session-id", env)
	if got := resp.Header.Get("x-seen-session"); got != env {
		t.Errorf("route without the filter: upstream received %q, want the envelope as sent", got)
	}
	resp, _ = do(t, "POST", e.url("/plain"), nil)
	if got := resp.Header.Get("mcp-session-id"); strings.Contains(got, ";UV:") {
		t.Errorf("route without the filter: answer wrapped: %q", got)
	}
	// The weighted cluster's disabled wins over the route's enabling config.
	resp, _ = do(t, "POST", e.url("/split"), nil, "mcp-session-id", env)
	if got := resp.Header.Get("x-seen-session"); got != env {
		t.Errorf("weighted cluster disabled: upstream received %q, want the envelope as sent", got)
	}
}

// TestStatefulSessionFilterOrderAroundExtProc: placed before ext_proc, the filter restores the
// request's value before ext_proc sees the request and wraps the response's after ext_proc saw
// the upstream's (encoders run in reverse order); placed after ext_proc, ext_proc sees the
// envelopes on both sides.
func TestStatefulSessionFilterOrderAroundExtProc(t *testing.T) {
	type seen struct{ req, resp string }
	var last atomic.Value
	last.Store(seen{})
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		s := last.Load().(seen)
		if h := m.GetRequestHeaders(); h != nil {
			s.req, _ = header(h.GetHeaders(), "mcp-session-id")
		}
		if h := m.GetResponseHeaders(); h != nil {
			s.resp, _ = header(h.GetHeaders(), "mcp-session-id")
		}
		last.Store(s)
		return nil
	}))
	a, b := sessionServer(t, "a"), sessionServer(t, "b")
	mode := mcpMode()
	for _, c := range []struct {
		name     string
		position int // in the chain [ext_proc, router]
	}{{"before ext_proc", 0}, {"after ext_proc", 1}} {
		t.Run(c.name, func(t *testing.T) {
			l := listener(t, e.listen, extProcFilter(time.Second), withStateful(t, envelopeSession(t, "mcp-session-id"), c.position))
			e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/", "pods", perRoute(t, mode)))),
				edsCluster("pods"), assignment("pods", a.Listener.Addr().String(), b.Listener.Addr().String()))
			if n := e.lastNACK(); n != "" {
				t.Fatalf("NACK: %s", n)
			}
			last.Store(seen{})
			resp, _ := do(t, "POST", e.url("/"), strings.NewReader("{}"), "content-type", "application/json")
			env := resp.Header.Get("mcp-session-id")
			_, id := openEnvelope(t, env)
			first := last.Load().(seen)
			last.Store(seen{})
			resp, _ = do(t, "POST", e.url("/"), strings.NewReader("{}"), "content-type", "application/json", "mcp-session-id", env)
			if resp.StatusCode != 200 || resp.Header.Get("x-seen-session") != id {
				t.Fatalf("second request: %d, upstream received %q, want 200 with %q", resp.StatusCode, resp.Header.Get("x-seen-session"), id)
			}
			second := last.Load().(seen)
			want := seen{req: id, resp: id}
			if c.position == 1 {
				want = seen{req: env, resp: env}
			}
			if first.resp != want.resp || second != want {
				t.Errorf("ext_proc saw response %q then %+v, want response %q then %+v", first.resp, second, want.resp, want)
			}
		})
	}
}
