package double_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
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

// TestDrainListeners: the admin's POST /drain_listeners, as Envoy's with --drain-strategy
// immediate: an idle keep-alive connection stays open, its next response says Connection: close
// and the connection closes after it (server.total_connections, which counts the listeners' connections and not the
// admin's, goes back to 0); with graceful, new connections are still accepted (until
// --drain-time-s, 600 s here); without, the listener stops accepting at once. inboundonly is
// refused, and so is a GET.
func TestDrainListeners(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(map[bool]string{true: "graceful", false: "immediate"}[graceful], func(t *testing.T) {
			e := newEnv(t, answer(nil))
			up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
			l := listener(t, e.listen, nil, nil)
			e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "a", nil))), staticCluster("a", up.addr))
			admin := "http://" + e.d.AdminAddr
			connections := func() string {
				resp, err := http.Get(admin + "/stats")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				for line := range strings.Lines(string(b)) {
					if v, ok := strings.CutPrefix(strings.TrimSpace(line), "server.total_connections: "); ok {
						return v
					}
				}
				t.Fatalf("/stats has no server.total_connections:\n%s", b)
				return ""
			}
			client := &http.Client{Transport: &http.Transport{}}
			get := func() *http.Response {
				t.Helper()
				resp, err := client.Get(e.url("/x"))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			waitFor(t, "the listener", func() bool {
				resp, err := client.Get(e.url("/x"))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return err == nil && resp.StatusCode == 200
			})
			if resp := get(); resp.Close || connections() != "1" {
				t.Fatalf("before the drain: Connection: close %v, server.total_connections %s; want a kept connection, 1", resp.Close, connections())
			}
			for _, bad := range []struct{ method, query string }{{http.MethodGet, ""}, {http.MethodPost, "?graceful&inboundonly"}} {
				req, _ := http.NewRequest(bad.method, admin+"/drain_listeners"+bad.query, nil)
				if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode/100 != 4 {
					t.Fatalf("%s /drain_listeners%s: %v %v, want a 4xx", bad.method, bad.query, resp, err)
				}
			}
			query := ""
			if graceful {
				query = "?graceful"
			}
			if resp, err := http.Post(admin+"/drain_listeners"+query, "", nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("POST /drain_listeners%s: %v %v", query, resp, err)
			}
			if graceful {
				// Envoy closes no idle connection (envoyproxy/envoy#42305): it asks the client to
				// close with its next response.
				if n := connections(); n != "1" {
					t.Errorf("server.total_connections right after the drain: %s, want 1 (the idle connection stays)", n)
				}
				if resp := get(); !resp.Close {
					t.Error("a response during the drain does not say Connection: close")
				}
				waitFor(t, "the connection closed after its response", func() bool { return connections() == "0" })
				if resp := get(); resp.StatusCode != 200 || !resp.Close {
					t.Errorf("a new connection during a graceful drain: %d, Connection: close %v; want 200, true", resp.StatusCode, resp.Close)
				}
				return
			}
			waitFor(t, "the listener stopped accepting", func() bool {
				c, err := net.DialTimeout("tcp", e.listen, time.Second)
				if err == nil {
					c.Close()
				}
				return err != nil
			})
		})
	}
}
