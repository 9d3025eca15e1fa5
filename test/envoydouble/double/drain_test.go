package double_test

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestCloseEndsDrainingListener: a request in flight on a listener that a listener update
// removed (it drains, as Envoy's, for up to ten minutes) ends when the double closes: Close
// stops every connection, not only those of the listeners in the configuration. A test that
// closes the double would otherwise keep such a stream, its upstream request and their
// goroutines, and an upstream server's Close would wait for them.
func TestCloseEndsDrainingListener(t *testing.T) {
	e := newEnv(t, answer(nil))
	ended := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(ended)
	})
	l := listener(t, e.listen, nil, nil)
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "a", nil))), staticCluster("a", up.addr))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // on failure: the client goes, and the stream with it
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/stream"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	e.push(staticCluster("a", up.addr)) // the listener goes; its stream drains
	e.d.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream of a draining listener outlived the double's Close")
	}
}
