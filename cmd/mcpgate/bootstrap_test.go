package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// bootstrapOf runs `mcpgate bootstrap args...` and returns what it prints, parsed.
func bootstrapOf(t *testing.T, args ...string) ([]byte, *bootstrapv3.Bootstrap) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	err = runBootstrap(context.Background(), args)
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
	return out, b
}

// TestBootstrapCommand runs `mcpgate bootstrap` and reads back what it prints.
func TestBootstrapCommand(t *testing.T) {
	out, b := bootstrapOf(t, "--gateway", "ns/gw", "--node-id", "pod-1", "--xds-addr", "10.0.0.1:18000",
		"--extproc-addr", "unix:///run/extproc.sock", "--envoy-admin-addr", "127.0.0.1:15001",
		"--mux-addr", "unix:///run/mux.sock", "--mux-upstream", "unix:///run/upstream.sock")
	if b.GetNode().GetId() != "pod-1" || b.GetNode().GetCluster() != "ns/gw" || b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue() != 15001 {
		t.Errorf("node %v, admin %v", b.GetNode(), b.GetAdmin())
	}
	if !strings.Contains(string(out), "address: 10.0.0.1") || !strings.Contains(string(out), "path: /run/extproc.sock") ||
		!strings.Contains(string(out), "path: /run/mux.sock") || !strings.Contains(string(out), "path: /run/upstream.sock") {
		t.Errorf("addresses missing:\n%s", out)
	}
	for _, args := range [][]string{{}, {"--gateway", "nope"}, {"--gateway", "ns/gw", "extra"},
		{"--gateway", "ns/gw", "--xds-addr", "unix:///run/xds.sock", "--xds-tls-dir", "/etc/x"},
		{"--gateway", "ns/gw", "--mux-upstream", "127.0.0.1:18003"}, {"--gateway", "ns/gw", "--mux-addr", "mux"}} {
		if err := runBootstrap(context.Background(), args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// TestBootstrapGatewayRequired: without --gateway, mcpgate bootstrap exits 1 with its usage and
// an error that names the flag, not the library's gateway "".
func TestBootstrapGatewayRequired(t *testing.T) {
	var code int
	stderr := stderrOf(t, func() { code = dispatch(t.Context(), []string{"bootstrap", "--xds-addr", "10.0.0.1:18000"}) })
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	last := strings.TrimSpace(stderr[strings.LastIndex(strings.TrimRight(stderr, "\n"), "\n")+1:])
	if !strings.HasPrefix(stderr, "usage: mcpgate bootstrap --gateway NS/NAME") ||
		last != "mcpgate bootstrap: --gateway NS/NAME is required: the Gateway whose configuration this Envoy takes" {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// TestBootstrapXDSTLS: --xds-tls-dir gives the xDS cluster mutual TLS with the directory's files,
// checking the server's certificate for --xds-addr's host.
func TestBootstrapXDSTLS(t *testing.T) {
	_, b := bootstrapOf(t, "--gateway", "ns/gw", "--xds-addr", "mcpgate-controller.mcpgate-system.svc:18000", "--xds-tls-dir", "/etc/mcpgate/xds-tls")
	var xds *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == contract.XDSCluster {
			xds = c
		}
	}
	var utc tlsv3.UpstreamTlsContext
	if err := xds.GetTransportSocket().GetTypedConfig().UnmarshalTo(&utc); err != nil {
		t.Fatalf("xds_cluster transport socket: %v", err)
	}
	ctc := utc.GetCommonTlsContext()
	if utc.GetSni() != "mcpgate-controller.mcpgate-system.svc" || len(ctc.GetTlsCertificates()) != 1 ||
		ctc.GetTlsCertificates()[0].GetCertificateChain().GetFilename() != "/etc/mcpgate/xds-tls/tls.crt" ||
		ctc.GetTlsCertificates()[0].GetPrivateKey().GetFilename() != "/etc/mcpgate/xds-tls/tls.key" ||
		ctc.GetValidationContext().GetTrustedCa().GetFilename() != "/etc/mcpgate/xds-tls/ca.crt" {
		t.Errorf("xds_cluster TLS: %v", &utc)
	}
}
