package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/syncbuf"
)

// fileTLS is testdata/e2e-tls.yaml, a Gateway of its own beside the lab's.
const fileTLS = "e2e-tls.yaml"

// httpsServer is an MCP server (go-sdk, Streamable HTTP) served over HTTPS with a certificate
// for localhost from the suite's upstream CA. It records the path, server name and Host header
// of every request it serves; its error log holds the TLS handshakes that failed.
type httpsServer struct {
	srv  *httptest.Server
	errs syncbuf.Buffer
	mu   sync.Mutex
	seen []seenRequest
}

// seenRequest is what an httpsServer recorded of a request: client is the common name of the
// client certificate, "" for none.
type seenRequest struct{ path, sni, host, client string }

func startHTTPSServer(t *testing.T) *httpsServer {
	t.Helper()
	return startHTTPSServerWith(t, nil)
}

// startHTTPSServerWith starts an httpsServer whose TLS configuration tune changes (nil: none).
func startHTTPSServerWith(t *testing.T, tune func(*tls.Config)) *httpsServer {
	t.Helper()
	certPEM, keyPEM, err := env.upstreamCA.IssueServer([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "https-mcp", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "secure-echo", Description: "echoes its text over TLS"},
		func(_ context.Context, _ *mcp.CallToolRequest, in struct{ Text string }) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	s := &httpsServer{}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := seenRequest{path: r.URL.Path, sni: r.TLS.ServerName, host: r.Host}
		if len(r.TLS.PeerCertificates) > 0 {
			seen.client = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		s.mu.Lock()
		s.seen = append(s.seen, seen)
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if tune != nil {
		tune(s.srv.TLS)
	}
	s.srv.Config.ErrorLog = log.New(&s.errs, "", 0)
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// requests returns what the server recorded of the requests it served.
func (s *httpsServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// handshakeErrors counts the failed TLS handshakes in the server's error log.
func (s *httpsServer) handshakeErrors() int {
	return strings.Count(s.errs.String(), "TLS handshake error")
}

// TestTLSToMCPTarget: a static MCP target whose policies.tls is set is reached over HTTPS, its
// certificate verified against the CA of `mcpgate run --upstream-ca-file` and its host: a go-sdk
// client lists the tools of a server on https://localhost through the gateway, and the server
// sees the SNI localhost and the Host header localhost:PORT (the route rewrites it), not the
// gateway's. A target that wants another name in the certificate (verifySubjectAltNames) gets a
// 503: the data plane refuses the certificate in the handshake and the server serves nothing.
func TestTLSToMCPTarget(t *testing.T) {
	up := startHTTPSServer(t)
	free, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileTLS, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "WRONG_NAME_PORT": strconv.Itoa(free[1]), "SERVER_PORT": portOf(up.srv)})

	url := "http://" + addr(free[0]) + "/mcp"
	expectSecureEcho(t, "tools/list through the TLS target", url)
	seen := up.requests()
	if len(seen) == 0 {
		t.Fatal("the server served no request")
	}
	wantHost := "localhost:" + portOf(up.srv)
	for i, r := range seen {
		if r.sni != "localhost" || r.host != wantHost {
			t.Errorf("request %d (%s) reached the server with SNI %q and Host %q, want localhost and %s", i, r.path, r.sni, r.host, wantHost)
		}
	}

	// The other listener's target wants a name the certificate lacks.
	up.expectRefused(t, addr(free[1]), "/wrong-name/mcp", "the wrong-name target")
}

// expectRefused checks that initialize through the gateway at address gateway answers 503 while
// the server logs a failed TLS handshake, and that the server never serves path (a path of the
// test's own, the route forwarding any, so that none of its requests can hide among others).
func (s *httpsServer) expectRefused(t *testing.T, gateway, path, what string) {
	t.Helper()
	url := "http://" + gateway + path
	failed := s.handshakeErrors()
	eventually(t, what+"'s handshake is refused", func() error {
		a, err := env.request(http.MethodPost, url, "", initializeBody)
		if err != nil {
			return err
		}
		if a.status != http.StatusServiceUnavailable {
			return fmt.Errorf("initialize through %s: %d %q, want 503", what, a.status, a.body)
		}
		if s.handshakeErrors() == failed {
			return fmt.Errorf("the server logged no failed TLS handshake (its log: %q)", s.errs.String())
		}
		return nil
	})
	for _, r := range s.requests() {
		if r.path == path {
			t.Errorf("the server served a request through %s: %+v", what, r)
		}
	}
}

// expectSecureEcho waits until a go-sdk client lists, at the Streamable HTTP url, the one tool of
// the TLS server of startHTTPSServer (secure-echo).
func expectSecureEcho(t *testing.T, what, url string) {
	t.Helper()
	eventually(t, what, func() error {
		return inSession(&mcp.StreamableClientTransport{Endpoint: url}, func(ctx context.Context, cs *mcp.ClientSession) error {
			res, err := cs.ListTools(ctx, nil)
			if err != nil {
				return fmt.Errorf("tools/list: %w", err)
			}
			var names []string
			for _, tool := range res.Tools {
				names = append(names, tool.Name)
			}
			if !slices.Equal(names, []string{"secure-echo"}) {
				return fmt.Errorf("tools %v, want [secure-echo]", names)
			}
			return nil
		})
	})
}
