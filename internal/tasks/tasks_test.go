package tasks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestGroupFailure: the first task that fails stops the others, the stop functions run in the
// order they were added, and Wait returns the failure named with its task.
func TestGroupFailure(t *testing.T) {
	g := New(context.Background())
	var stops []string
	g.Go("waiting", func() error { <-g.Context().Done(); return nil })
	g.OnStop(func() { stops = append(stops, "first") })
	g.OnStop(func() { stops = append(stops, "second") })
	g.Go("failing", func() error { return errors.New("boom") })
	if err := g.Wait(); err == nil || err.Error() != "failing: boom" {
		t.Errorf("Wait = %v, want failing: boom", err)
	}
	if got := strings.Join(stops, ","); got != "first,second" {
		t.Errorf("stop functions ran as %q, want first,second", got)
	}
}

// TestGroupServe: Serve serves until the parent context ends, then the server shuts down and
// Wait returns no error.
func TestGroupServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := New(ctx)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + lis.Addr().String()
	g.Serve("web", lis, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("served %q, want ok", body)
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Errorf("Wait after the parent context ended: %v", err)
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Error("still served after the tasks stopped")
	}
}
