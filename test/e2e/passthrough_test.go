package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// filePassthrough is testdata/e2e-passthrough.yaml, two Gateways of their own beside the lab's.
const filePassthrough = "e2e-passthrough.yaml"

// TestBackendAuthPassthrough: under a Strict JWT policy, the caller's validated token reaches the
// MCP server (go-sdk) of a backend with policies.auth.passthrough, as agentgateway forwards it;
// the server of a backend without it never sees the token (the gateway removes it, as Envoy's
// jwt_authn does).
func TestBackendAuthPassthrough(t *testing.T) {
	var mu sync.Mutex
	// the Host a request came with (the Gateway's address: the routes keep the client's Host) ->
	// the Authorization headers the server got
	seen := map[string][]string{}
	up := recordingMCPServer(t, func(r *http.Request) {
		mu.Lock()
		seen[r.Host] = append(seen[r.Host], r.Header.Get("Authorization"))
		mu.Unlock()
	})

	issuer, err := newTestIssuer()
	if err != nil {
		t.Fatal(err)
	}
	var jwks json.RawMessage = []byte(issuer.jwks())
	compact, err := json.Marshal(jwks) // one line, for the YAML's quoted scalar
	if err != nil {
		t.Fatal(err)
	}
	token, err := issuer.token("alice", "example")
	if err != nil {
		t.Fatal(err)
	}
	free, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, filePassthrough, map[string]string{"KEPT_PORT": strconv.Itoa(free[0]), "STRIPPED_PORT": strconv.Itoa(free[1]),
		"SERVER_PORT": portOf(up), "ISSUER": issuer.issuer, "JWKS": string(compact)})

	headers := func(port int) []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen[addr(port)])
	}
	for _, c := range []struct {
		port int
		want string // the Authorization the server gets
	}{{free[0], "Bearer " + token}, {free[1], ""}} {
		eventually(t, fmt.Sprintf("tools/list through the Gateway on %d", c.port), func() error {
			transport := &mcp.StreamableClientTransport{Endpoint: "http://" + addr(c.port) + "/mcp", HTTPClient: bearerClient(token), MaxRetries: -1}
			return inSession(transport, func(ctx context.Context, cs *mcp.ClientSession) error {
				_, err := cs.ListTools(ctx, nil)
				return err
			})
		})
		got := headers(c.port)
		if len(got) == 0 {
			t.Fatalf("the server recorded no request with the Host of the Gateway on %d", c.port)
		}
		if i := slices.IndexFunc(got, func(v string) bool { return v != c.want }); i >= 0 {
			t.Error(redact(fmt.Sprintf("through the Gateway on %d the server got Authorization %q, want %q on every request", c.port, got[i], c.want)))
		}
	}
}

// recordingMCPServer starts a go-sdk MCP server over Streamable HTTP with one tool, noop (it
// answers "done"), that calls record with each request before serving it.
func recordingMCPServer(t *testing.T, record func(*http.Request)) *httptest.Server {
	server := mcp.NewServer(&mcp.Implementation{Name: "recorder", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "noop", Description: "does nothing"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	return up
}
