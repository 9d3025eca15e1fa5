package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// TestBootstrapCommand runs `mcpgate bootstrap` and reads back what it prints.
func TestBootstrapCommand(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	err = runBootstrap(context.Background(), []string{"--gateway", "ns/gw", "--node-id", "pod-1", "--xds-addr", "10.0.0.1:18000",
		"--extproc-addr", "unix:///run/extproc.sock", "--envoy-admin-addr", "127.0.0.1:15001"})
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bootstrap.Parse(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if b.GetNode().GetId() != "pod-1" || b.GetNode().GetCluster() != "ns/gw" || b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue() != 15001 {
		t.Errorf("node %v, admin %v", b.GetNode(), b.GetAdmin())
	}
	if !strings.Contains(string(out), "address: 10.0.0.1") || !strings.Contains(string(out), "path: /run/extproc.sock") {
		t.Errorf("addresses missing:\n%s", out)
	}
	for _, args := range [][]string{{}, {"--gateway", "nope"}, {"--gateway", "ns/gw", "extra"}} {
		if err := runBootstrap(context.Background(), args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
