package double_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// holdingUpstream answers every request only once release is closed, as an SSE stream holds its
// request; started counts the requests it received.
func holdingUpstream(t *testing.T) (addr string, started *atomic.Int32, release chan struct{}) {
	started, release = &atomic.Int32{}, make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
		w.Write([]byte("done"))
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return s.Listener.Addr().String(), started, release
}

// result is a response read in a goroutine (do calls t.Fatal, which only the test's may).
type result struct {
	code             int
	body, overloaded string
	err              error
}

func get(url string, out chan<- result) {
	resp, err := http.Get(url)
	if err != nil {
		out <- result{err: err}
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	out <- result{code: resp.StatusCode, body: string(b), overloaded: resp.Header.Get("x-envoy-overloaded"), err: err}
}

// await returns the next result, failing the test when none comes (a request that should be
// refused waits instead).
func await(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return result{}
	}
}

// holdOne serves every path from cluster c (its endpoint set to a holdingUpstream) and sends
// a first request, which the upstream holds.
func holdOne(t *testing.T, c *clusterv3.Cluster) (e *env, addr string, started *atomic.Int32, release chan struct{}, first chan result) {
	e = newEnv(t, answer(nil))
	addr, started, release = holdingUpstream(t)
	c.LoadAssignment = assignment(c.Name, addr)
	name := listener(t, e.listen, nil, nil).Name
	e.push(listener(t, e.listen, nil, nil), routeConfig(name, vhost("vh", []string{"*"}, prefixRoute("r", "/", c.Name, nil))), c)
	first = make(chan result, 1)
	go get(e.url("/sse"), first)
	waitFor(t, "the upstream to hold the first request", func() bool { return started.Load() == 1 })
	return e, addr, started, release, first
}

// limitedCluster is a static cluster with circuit breakers of the DEFAULT priority and no
// endpoint yet.
func limitedCluster(name string, maxConnections, maxPending, maxRequests uint32) *clusterv3.Cluster {
	c := staticCluster(name, "")
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections: wrapperspb.UInt32(maxConnections), MaxPendingRequests: wrapperspb.UInt32(maxPending),
		MaxRequests: wrapperspb.UInt32(maxRequests),
	}}}
	return c
}

const overflowBody = "upstream connect error or disconnect/reset before headers. reset reason: overflow"

// TestCircuitBreakers: a cluster's circuit breakers refuse what exceeds them with Envoy's 503 UO,
// as its connection pool fails the request with reason Overflow. max_requests counts the requests
// in flight; over HTTP/1.1 each holds its connection, so past max_connections a request waits for
// one to end, and past max_pending_requests waiting ones it is refused.
func TestCircuitBreakers(t *testing.T) {
	t.Run("max_requests", func(t *testing.T) {
		e, addr, started, release, first := holdOne(t, limitedCluster("held", 1024, 1024, 1))

		second := make(chan result, 1)
		go get(e.url("/sse"), second)
		if r := await(t, second, "the second request's answer"); r.err != nil || r.code != 503 || r.body != overflowBody || r.overloaded != "true" {
			t.Errorf("second request: %+v, want 503 %q with x-envoy-overloaded: true", r, overflowBody)
		}
		l := e.logs(1)[0]
		if l["response_flags"] != "UO" || l["details"] != "upstream_reset_before_response_started{overflow}" || l["upstream_host"] != addr {
			t.Errorf("access log: flags %v details %v upstream %v, want UO, the overflow reset and the host whose connection refused it",
				l["response_flags"], l["details"], l["upstream_host"])
		}
		if started.Load() != 1 {
			t.Errorf("the upstream saw %d requests; the refused one must not reach it", started.Load())
		}
		close(release)
		if r := <-first; r.err != nil || r.code != 200 || r.body != "done" {
			t.Fatalf("first request: %+v", r)
		}
		if resp, body := do(t, "GET", e.url("/again"), nil); resp.StatusCode != 200 || body != "done" {
			t.Errorf("after the first request ended: got %d %q, want 200", resp.StatusCode, body)
		}
	})

	t.Run("max_connections and max_pending_requests", func(t *testing.T) {
		e, _, started, release, first := holdOne(t, limitedCluster("held", 1, 1, 1024))
		// The first holds the one connection: of the next two, the first to arrive waits for it
		// (pending), the other finds the pending queue full.
		next := make(chan result, 2)
		go get(e.url("/sse"), next)
		go get(e.url("/sse"), next)
		refused := await(t, next, "a refusal")
		if refused.err != nil || refused.code != 503 || refused.body != overflowBody || refused.overloaded != "true" {
			t.Fatalf("a request beyond max_pending_requests: %+v, want 503 %q", refused, overflowBody)
		}
		if l := e.logs(1)[0]; l["response_flags"] != "UO" || l["upstream_host"] != nil {
			t.Errorf("access log: flags %v upstream %v, want UO and no host (no connection took the request)", l["response_flags"], l["upstream_host"])
		}
		if started.Load() != 1 {
			t.Errorf("the upstream saw %d requests while its connection was held, want 1", started.Load())
		}
		close(release)
		for _, ch := range []chan result{first, next} {
			if r := <-ch; r.err != nil || r.code != 200 || r.body != "done" {
				t.Errorf("a held or pending request: %+v, want 200", r)
			}
		}
		if started.Load() != 2 {
			t.Errorf("the upstream saw %d requests, want 2: the pending one once the connection was free", started.Load())
		}
	})
}
