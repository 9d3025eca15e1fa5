package double_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// keepAliveServer is an HTTP/1.1 upstream that keeps its connections open and records, per
// connection, the paths it read and whether the client closed it. With closeSecond it reads a
// connection's second request and closes the connection without answering: what a server closing
// an idle keep-alive connection does to the request that crosses its FIN.
type keepAliveServer struct {
	addr string
	mu   sync.Mutex
	// conns holds each connection's paths, in accept order; closed says which ones the client
	// closed while the server waited for a request.
	conns  [][]string
	closed []bool
}

func newKeepAliveServer(t *testing.T, closeSecond bool) *keepAliveServer {
	ln := listen(t)
	s := &keepAliveServer{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			i := len(s.conns)
			s.conns, s.closed = append(s.conns, nil), append(s.closed, false)
			s.mu.Unlock()
			go s.serve(c, i, closeSecond)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *keepAliveServer) serve(c net.Conn, i int, closeSecond bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		s.mu.Lock()
		if err != nil {
			s.closed[i] = true
			s.mu.Unlock()
			return
		}
		s.conns[i] = append(s.conns[i], req.URL.Path)
		s.mu.Unlock()
		if closeSecond && n == 1 {
			return
		}
		body := fmt.Sprintf("connection %d request %d", i, n)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

func (s *keepAliveServer) state() ([][]string, []bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([][]string, len(s.conns))
	for i, c := range s.conns {
		conns[i] = append([]string(nil), c...)
	}
	return conns, append([]bool(nil), s.closed...)
}

// withIdleTimeout sets the cluster's upstream HTTP/1.1 options with common_http_protocol_options'
// idle_timeout, as the translator does.
func withIdleTimeout(t *testing.T, c *clusterv3.Cluster, d time.Duration) *clusterv3.Cluster {
	opts, err := anypb.New(&httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(d)},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}
	return c
}

// TestReusedConnectionClosedIsNotRetried: a GET sent on a pooled connection the server closes
// without answering gets Envoy's 503 UC; without a retry policy Envoy's router sends it nowhere
// else (Go's Transport would send it again on a new connection, hiding the failure).
func TestReusedConnectionClosedIsNotRetried(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newKeepAliveServer(t, true)
	name := listener(t, e.listen, nil, nil).Name
	e.push(listener(t, e.listen, nil, nil), routeConfig(name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", nil))),
		staticCluster("up", up.addr))
	if resp, body := do(t, "GET", e.url("/first"), nil); resp.StatusCode != 200 || body != "connection 0 request 0" {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	const want = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	if resp, body := do(t, "GET", e.url("/sse"), nil); resp.StatusCode != 503 || body != want {
		t.Errorf("a GET whose reused connection the server closed: %d %q, want 503 %q", resp.StatusCode, body, want)
	}
	if l := e.logs(2)[1]; l["response_flags"] != "UC" {
		t.Errorf("access log flags %v, want UC", l["response_flags"])
	}
	if conns, _ := up.state(); len(conns) != 1 || len(conns[0]) != 2 {
		t.Errorf("the upstream's connections and their requests: %v, want one connection with /first and /sse (no retry)", conns)
	}
}

// TestUpstreamIdleTimeout: the double closes an upstream connection that carried no request for
// the cluster's idle_timeout, and the next request opens a new one.
func TestUpstreamIdleTimeout(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newKeepAliveServer(t, false)
	name := listener(t, e.listen, nil, nil).Name
	e.push(listener(t, e.listen, nil, nil), routeConfig(name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", nil))),
		withIdleTimeout(t, staticCluster("up", up.addr), 50*time.Millisecond))
	if resp, body := do(t, "GET", e.url("/first"), nil); resp.StatusCode != 200 || body != "connection 0 request 0" {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	waitFor(t, "the double to close the idle upstream connection", func() bool {
		_, closed := up.state()
		return len(closed) == 1 && closed[0]
	})
	if resp, body := do(t, "GET", e.url("/second"), nil); resp.StatusCode != 200 || body != "connection 1 request 0" {
		t.Errorf("after the idle timeout: %d %q, want the answer of a new connection", resp.StatusCode, body)
	}
}
