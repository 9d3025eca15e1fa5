package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// fileHTTPS is testdata/e2e-https.yaml, a Gateway with an HTTPS listener beside the lab's.
const fileHTTPS = "e2e-https.yaml"

// TestHTTPSListener: an MCP client (go-sdk, Streamable HTTP) reaches server-everything over
// HTTPS through the gateway: the data plane terminates TLS with the certificate of the
// listener's kubernetes.io/tls Secret (sent over SDS), which the client verifies against the
// test's CA for localhost, and tools/list and tools/call pass through ext_proc as on HTTP.
func TestHTTPSListener(t *testing.T) {
	ca, url := serveHTTPS(t, fileHTTPS, nil)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}}
	t.Cleanup(client.CloseIdleConnections)
	eventually(t, "tools/list and tools/call over HTTPS", func() error {
		return inSession(&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: client, MaxRetries: -1}, func(ctx context.Context, cs *mcp.ClientSession) error {
			return listAndEcho(ctx, cs, "over https")
		})
	})

	// The MCP inspector CLI (Node.js, trusting the test's CA through NODE_EXTRA_CA_CERTS) lists and
	// calls the tools over HTTPS too; without the CA it fails on the certificate.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	trusting := []string{"NODE_EXTRA_CA_CERTS=" + caFile}
	eventually(t, "the inspector's tools/list and tools/call over HTTPS", func() error {
		names, err := toolNames(env.inspector.runWith(trusting, url, "--transport", "http", "--method", "tools/list"))
		if err != nil {
			return err
		}
		if !slices.Contains(names, "echo") {
			return fmt.Errorf("tools/list: no echo among %q", names)
		}
		r := env.inspector.runWith(trusting, url, "--transport", "http", "--method", "tools/call", "--tool-name", "echo", "--tool-args-json", `{"message":"inspector over https"}`)
		if r.code != 0 || !strings.Contains(r.stdout, "inspector over https") {
			return fmt.Errorf("tools/call echo: %s", r)
		}
		return nil
	})
	if r := env.inspector.run(url, "--transport", "http", "--method", "tools/list"); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr+r.stdout), "certificate") {
		t.Errorf("the inspector without the test CA: %s, want a certificate error", r)
	}

	// A client that does not trust the certificate's issuer is refused in the handshake.
	plain := &http.Client{Timeout: 10 * time.Second}
	resp, err := plain.Get(url)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s without the test CA: %d, want a certificate error", url, resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET %s without the test CA: %v, want a certificate error", url, err)
	}
}

// newCA returns a new test CA.
func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// serveHTTPS serves the testdata file name, a Gateway with an HTTPS listener on ${GATEWAY_PORT}
// whose certificate (${CERT}, ${KEY}: for localhost and 127.0.0.1) a new CA issues, routed to
// server-everything on ${EVERYTHING_PORT}, with the variables of more besides. It returns the CA
// and the listener's /mcp URL.
func serveHTTPS(t *testing.T, name string, more map[string]string) (*pki.CA, string) {
	t.Helper()
	ca := newCA(t)
	crt, key, err := ca.IssueServer([]string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "EVERYTHING_PORT": strconv.Itoa(env.ports.everythingHTTPUp),
		"CERT": indentPEM(crt), "KEY": indentPEM(key)}
	maps.Copy(vars, more)
	serveTestdata(t, name, vars)
	return ca, "https://" + addr(free[0]) + "/mcp"
}

// indentPEM indents PEM text by four spaces, for a YAML block scalar of the testdata's Secrets.
func indentPEM(pem []byte) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(string(pem), "\n"), "\n", "\n    ")
}

// listAndEcho lists server-everything's tools through cs, wanting echo among them, and calls
// echo with message, wanting it back.
func listAndEcho(ctx context.Context, cs *mcp.ClientSession, message string) error {
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	if !slices.ContainsFunc(res.Tools, func(tool *mcp.Tool) bool { return tool.Name == "echo" }) {
		return fmt.Errorf("tools/list: no echo among %d tools", len(res.Tools))
	}
	call, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": message}})
	if err != nil {
		return fmt.Errorf("tools/call echo: %w", err)
	}
	if got := textOf(call); !strings.Contains(got, message) {
		return fmt.Errorf("tools/call echo answered %q", got)
	}
	return nil
}
