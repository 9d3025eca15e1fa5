package mux

import (
	"fmt"
	"strings"
	"testing"
)

// TestUpstreamClients: the clients of upstream addresses are kept up to the cap, the same one per
// address; an address that is not unix:///PATH (absolute) or HOST:PORT is refused.
func TestUpstreamClients(t *testing.T) {
	h := New(Options{Secret: "s"})
	h.maxClients = 3
	first, err := h.upstream("unix:///run/gw-0.sock")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := h.upstream("unix:///run/gw-0.sock"); again != first {
		t.Error("a second request to an address made a second client")
	}
	for i := range 10 {
		if _, err := h.upstream(fmt.Sprintf("unix:///run/gw-%d.sock", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := h.upstream(fmt.Sprintf("127.0.0.1:%d", 20000+i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.clients); n != 3 {
		t.Errorf("%d clients kept, want the cap, 3", n)
	}
	for _, addr := range []string{"unix://relative.sock", "unix://", "unix://./x.sock", "/abs/path", "", "host", "host:port", "host:70000"} {
		if _, err := h.upstream(addr); err == nil || !strings.Contains(err.Error(), "upstream") {
			t.Errorf("upstream(%q): %v, want an error", addr, err)
		}
	}
	if up, _ := h.upstream("unix:///run/x.sock"); up.base != "http://mux-upstream" {
		t.Errorf("base of a socket %q", up.base)
	}
	if up, _ := h.upstream("[::1]:8080"); up.base != "http://[::1]:8080" {
		t.Errorf("base of [::1]:8080 %q", up.base)
	}
}
