package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// fileBackendCert is testdata/e2e-backend-cert.yaml, two Gateways of their own beside the lab's.
const fileBackendCert = "e2e-backend-cert.yaml"

// TestBackendClientCertificate: an MCP server (go-sdk) over TLS that requires and verifies client
// certificates (tls.RequireAndVerifyClientCert, against a CA of the test's) is reachable through
// a Gateway whose spec.tls.backend.clientCertificateRef names a Secret with a certificate of that
// CA: a go-sdk client lists and calls its tools, and the server sees the Secret's certificate on
// every request. Through a Gateway without it, the same route gets 503: the server refuses the
// handshake and serves nothing.
func TestBackendClientCertificate(t *testing.T) {
	clientCA := newCA(t)
	crt, key, err := clientCA.IssueGateway("e2e-backend-cert/with-cert", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	up := startHTTPSServerWith(t, func(c *tls.Config) {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, clientCA.Pool()
	})
	free, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileBackendCert, map[string]string{"WITH_PORT": strconv.Itoa(free[0]), "WITHOUT_PORT": strconv.Itoa(free[1]),
		"SERVER_PORT": portOf(up.srv), "CERT": indentPEM(crt), "KEY": indentPEM(key)})

	url := "http://" + addr(free[0]) + "/mcp"
	eventually(t, "tools/list and tools/call through the Gateway presenting the client certificate", func() error {
		return inSession(&mcp.StreamableClientTransport{Endpoint: url}, func(ctx context.Context, cs *mcp.ClientSession) error {
			res, err := cs.ListTools(ctx, nil)
			if err != nil {
				return fmt.Errorf("tools/list: %w", err)
			}
			if !slices.ContainsFunc(res.Tools, func(tool *mcp.Tool) bool { return tool.Name == "secure-echo" }) {
				return fmt.Errorf("tools/list: no secure-echo among %d tools", len(res.Tools))
			}
			call, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "secure-echo", Arguments: map[string]any{"Text": "over mutual tls"}})
			if err != nil {
				return fmt.Errorf("tools/call secure-echo: %w", err)
			}
			if got := textOf(call); got != "over mutual tls" {
				return fmt.Errorf("tools/call secure-echo answered %q", got)
			}
			return nil
		})
	})
	seen := up.requests()
	if len(seen) == 0 {
		t.Fatal("the server served no request")
	}
	for i, r := range seen {
		if r.client != "e2e-backend-cert/with-cert" {
			t.Errorf("request %d (%s) reached the server with the client certificate %q, want the Secret's, e2e-backend-cert/with-cert", i, r.path, r.client)
		}
	}

	// The Gateway without clientCertificateRef: the server refuses its handshake.
	up.expectRefused(t, addr(free[1]), "/without/mcp", "the Gateway without a client certificate")
}
