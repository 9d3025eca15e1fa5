package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// filePeerCert is testdata/e2e-mtls-xfcc.yaml: a Gateway with an HTTPS listener requiring client
// certificates, whose route's rule reads the certificate, and an HTTP listener.
const filePeerCert = "e2e-mtls-xfcc.yaml"

// forgedXFCC is the x-forwarded-client-cert every client of TestClientCertificateRuleAndXFCC
// sends of its own: it must never reach the server.
const forgedXFCC = `Hash=0000;Subject="CN=client a";URI=spiffe://e2e.test/client-a`

// TestClientCertificateRuleAndXFCC: behind a Gateway whose HTTPS listener requires client
// certificates of one CA, a rule on source.uriSan and source.subject lets client A's certificate
// list and call the tools of a go-sdk MCP server and refuses client B's, of the same CA, with 403
// (B never reaches the server); the server gets Envoy's x-forwarded-client-cert describing A's
// certificate (digest, subject, URI SAN) on every request, never the one the client sent; through
// the Gateway's HTTP listener the client's own x-forwarded-client-cert is removed and none is set.
func TestClientCertificateRuleAndXFCC(t *testing.T) {
	var mu sync.Mutex
	// the Host a request came with (the listener's address) -> the x-forwarded-client-cert
	// values of each request the server got (nil: none)
	seen := map[string][][]string{}
	up := recordingMCPServer(t, func(r *http.Request) {
		mu.Lock()
		seen[r.Host] = append(seen[r.Host], r.Header.Values("X-Forwarded-Client-Cert"))
		mu.Unlock()
	})
	recorded := func(port string) [][]string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen["127.0.0.1:"+port])
	}

	clientCA := newCA(t)
	a := issueClientCert(t, clientCA, "client a", "/client-a")
	b := issueClientCert(t, clientCA, "client b", "/client-b")
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	httpPort := strconv.Itoa(free[0])
	serverCA, endpoint := serveHTTPS(t, filePeerCert, map[string]string{"CLIENT_CA": indentPEM(clientCA.CertPEM),
		"HTTP_PORT": httpPort, "SERVER_PORT": portOf(up)})
	httpsPort := endpoint[strings.LastIndex(endpoint, ":")+1 : strings.LastIndex(endpoint, "/")]

	listAndCall := func(endpoint string, c *http.Client) error {
		return inSession(&mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: c, MaxRetries: -1}, func(ctx context.Context, cs *mcp.ClientSession) error {
			res, err := cs.ListTools(ctx, nil)
			if err != nil {
				return fmt.Errorf("tools/list: %w", err)
			}
			if len(res.Tools) != 1 || res.Tools[0].Name != "noop" {
				return fmt.Errorf("tools/list: %d tools, want noop alone", len(res.Tools))
			}
			call, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "noop"})
			if err != nil {
				return fmt.Errorf("tools/call noop: %w", err)
			}
			if got := textOf(call); got != "done" {
				return fmt.Errorf("tools/call noop answered %q", got)
			}
			return nil
		})
	}
	forged := []string{"X-Forwarded-Client-Cert", forgedXFCC}
	eventually(t, "tools/list and tools/call with client A's certificate", func() error {
		return listAndCall(endpoint, mtlsClient(t, serverCA, a, forged))
	})

	// Envoy's element for A's certificate (set_current_client_cert_details subject, URI, DNS; A
	// has no DNS SAN).
	sum := sha256.Sum256(a.Leaf.Raw)
	wantA := `Hash=` + hex.EncodeToString(sum[:]) + `;Subject="CN=client a";URI=spiffe://e2e.test/client-a`
	got := recorded(httpsPort)
	if len(got) == 0 {
		t.Fatal("the server recorded no request through the HTTPS listener")
	}
	for i, v := range got {
		if len(v) != 1 || v[0] != wantA {
			t.Errorf("HTTPS request %d of %d: the server got x-forwarded-client-cert %q, want [%q]", i+1, len(got), v, wantA)
		}
	}

	// A multiplexed backend (two targets, both the recording server): the mux's hops to the
	// targets carry the front hop's x-forwarded-client-cert.
	// (The mux passes the client's Host on: its requests are recorded with the listener's.)
	direct := len(recorded(httpsPort))
	muxed := strings.Replace(endpoint, "/mcp", "/muxed", 1)
	eventually(t, "the multiplexed backend's tools with client A's certificate", func() error {
		return inSession(&mcp.StreamableClientTransport{Endpoint: muxed, HTTPClient: mtlsClient(t, serverCA, a, forged), MaxRetries: -1}, func(ctx context.Context, cs *mcp.ClientSession) error {
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "one_noop"}); err != nil {
				return fmt.Errorf("tools/call one_noop: %w", err)
			}
			return nil
		})
	})
	got = recorded(httpsPort)
	if len(got) <= direct {
		t.Fatalf("no request of the mux recorded (%d requests before, %d after)", direct, len(got))
	}
	for i, v := range got[direct:] {
		if len(v) != 1 || v[0] != wantA {
			t.Errorf("the mux's request %d of %d to a target: x-forwarded-client-cert %q, want [%q]", i+1, len(got)-direct, v, wantA)
		}
	}

	// Client B, of the same CA: the handshake passes, the rule refuses.
	before := len(recorded(httpsPort))
	if err := listAndCall(endpoint, mtlsClient(t, serverCA, b, forged)); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("go-sdk client with client B's certificate: %v, want refused (Forbidden)", err)
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(initializeBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := mtlsClient(t, serverCA, b, forged).Do(req)
	if err != nil {
		t.Fatalf("initialize with client B's certificate: %v", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "RBAC: access denied") {
		t.Errorf("initialize with client B's certificate: %d %q, want 403 RBAC: access denied", resp.StatusCode, body)
	}
	if n := len(recorded(httpsPort)); n != before {
		t.Errorf("client B's requests reached the server (%d requests after A's %d)", n, before)
	}

	// The HTTP listener: no certificate, so no rule here; the forged header is removed.
	plain := &http.Client{Transport: extraHeaders{next: http.DefaultTransport, headers: forged}}
	if err := listAndCall("http://"+addr(free[0])+"/mcp", plain); err != nil {
		t.Fatalf("tools/list and tools/call through the HTTP listener: %v", err)
	}
	got = recorded(httpPort)
	if len(got) == 0 {
		t.Fatal("the server recorded no request through the HTTP listener")
	}
	for i, v := range got {
		if len(v) != 0 {
			t.Errorf("HTTP request %d of %d: the server got x-forwarded-client-cert %q, want none", i+1, len(got), v)
		}
	}
}
