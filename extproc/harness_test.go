package extproc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	"github.com/mcpgate/mcpgate/extproc/internal/metrictest"
	"github.com/mcpgate/mcpgate/internal/syncbuf"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
	"github.com/mcpgate/mcpgate/xds"
)

const (
	// testIssuer signs tokens with a key made for the test run (other orgs, for 403s).
	testIssuer = "https://issuer.test"
)

// The routes of the tests, as the translator names them.
var (
	streamableRoute = extproctest.Route{
		Gateway: "agentgateway-system/agentgateway", Route: "agentgateway-system/mcp/rule/0",
		Policy: "lab", MCP: "streamable-http", Backend: "agentgateway-system/mcp-backend", Target: "mcp-target",
	}
	sseRoute = extproctest.Route{
		Gateway: "agentgateway-system/agentgateway", Route: "agentgateway-system/mcp-sse/rule/0",
		Policy: "lab", MCP: "sse", Backend: "agentgateway-system/mcp-backend", Target: "mcp-target",
	}
)

// signer makes tokens of testIssuer.
type signer struct {
	key  *rsa.PrivateKey
	jwks string
}

func newSigner(t testing.TB) *signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"test-1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	return &signer{key: key, jwks: jwks}
}

func (s *signer) token(t testing.TB, claims gojwt.MapClaims) string {
	t.Helper()
	claims["iss"] = testIssuer
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	tok := gojwt.NewWithClaims(gojwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "test-1"
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// labPolicy is the lab's policy (Strict JWT, jwt.org == "solo.io") plus MCP rules allowing the
// tools fetch and echo, the prompt greet and the resources under file:///a, under the name "lab".
func labPolicy(sg *signer) *policyv1.Policy {
	return &policyv1.Policy{
		Name:    "lab",
		Sources: []string{"EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-jwt-auth", "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac"},
		Jwt: &policyv1.JWTAuthentication{
			Mode: policyv1.JWTAuthentication_STRICT,
			Providers: []*policyv1.JWTProvider{
				{Issuer: "solo.io", Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: extproctest.LabJWKS}},
				{Issuer: testIssuer, Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: sg.jwks}},
			},
		},
		TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_ALLOW, Expression: `jwt.org == "solo.io"`, Source: "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac#0"}},
		McpRules: []*policyv1.Rule{
			{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name in ["fetch", "echo"]`, Source: "AgentgatewayPolicy/agentgateway-system/tools#0"},
			{Action: policyv1.Rule_ALLOW, Expression: `mcp.prompt.name == "greet" || mcp.resource.name.startsWith("file:///a")`, Source: "AgentgatewayPolicy/agentgateway-system/tools#1"},
		},
	}
}

// syncBuffer collects lines written concurrently: the audit log, a server's log.
type syncBuffer struct{ syncbuf.Buffer }

// count returns how many times s occurs in what was written.
func (a *syncBuffer) count(s string) int { return strings.Count(a.String(), s) }

// withLog sends the server's log, from level on, to the returned buffer.
func withLog(level slog.Level) (harnessOption, *syncBuffer) {
	b := &syncBuffer{}
	return func(c *extproc.Config) {
		c.Logger = slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: level}))
	}, b
}

// records returns the audit lines written so far, decoded.
func (a *syncBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range a.Lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// recordsByID returns the audit lines written so far, decoded, keyed by their JSON-RPC id as
// fmt prints it (a later line of an id replaces an earlier one).
func (a *syncBuffer) recordsByID(t testing.TB) map[string]map[string]any {
	t.Helper()
	byID := map[string]map[string]any{}
	for _, r := range a.records(t) {
		byID[fmt.Sprint(r["jsonrpc_id"])] = r
	}
	return byID
}

// waitFor polls cond until it holds; it fails the test after 10 s. It waits for events that
// happen after a reply (a stream's end), never to judge speed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// harness is an ext_proc server on loopback TCP and a Unix socket, fed policies by a real xDS
// server.
type harness struct {
	srv       *extproc.Server
	xds       *xds.Server
	audit     *syncBuffer
	reg       *prometheus.Registry
	tcp, unix extprocv3.ExternalProcessorClient
}

type harnessOption func(*extproc.Config)

func newHarness(t *testing.T, policies []*policyv1.Policy, opts ...harnessOption) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &harness{audit: &syncBuffer{}, reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// The control plane.
	h.xds = xds.New(log)
	xlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xgs := grpc.NewServer(xds.GRPCServerOptions()...)
	h.xds.Register(xgs)
	go xgs.Serve(xlis)
	t.Cleanup(xgs.Stop)
	h.push(t, policies...)

	cfg := extproc.Config{
		XDSAddr: xlis.Addr().String(), NodeCluster: "*", NodeID: "test",
		Audit: h.audit, Registerer: h.reg, Logger: log, SessionKey: extproctest.SessionKey(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.srv, err = extproc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.srv.Close)
	runDone := make(chan struct{})
	go func() { h.srv.Run(ctx); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone })
	waitFor(t, "the first policy update", h.srv.Ready)

	tcpLis, err := extproc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "extproc.sock")
	unixLis, err := extproc.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	serveDone := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	go func() { serveDone <- h.srv.Serve(sctx, tcpLis, unixLis) }()
	t.Cleanup(func() {
		stop()
		if err := <-serveDone; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	h.tcp = dial(t, tcpLis.Addr().String())
	h.unix = dial(t, "unix://"+sock)
	return h
}

func dial(t *testing.T, target string) extprocv3.ExternalProcessorClient {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// push serves policies to ext_proc (group "*").
func (h *harness) push(t *testing.T, policies ...*policyv1.Policy) {
	t.Helper()
	msgs := make([]proto.Message, len(policies))
	for i, p := range policies {
		msgs[i] = p
	}
	if err := h.xds.Update(map[string]map[string][]proto.Message{"*": {contract.PolicyTypeURL: msgs}}); err != nil {
		t.Fatal(err)
	}
}

// clients returns the server's clients by transport name.
func (h *harness) clients() map[string]extprocv3.ExternalProcessorClient {
	return map[string]extprocv3.ExternalProcessorClient{"tcp": h.tcp, "unix": h.unix}
}

func (h *harness) open(t *testing.T, c extprocv3.ExternalProcessorClient, r extproctest.Route) *extproctest.Stream {
	t.Helper()
	s, err := extproctest.Open(context.Background(), c, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// metric sums the series of name whose labels include labels (histograms: the sample count).
func (h *harness) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, err := metrictest.Sum(h.reg, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Request headers as Envoy sends them for an MCP POST and GET.
func postHeaders(path, token string, extra ...extproctest.Header) []extproctest.Header {
	hs := []extproctest.Header{
		hdr(":authority", "127.0.0.1:8080"), hdr(":path", path), hdr(":method", "POST"), hdr(":scheme", "http"),
		hdr("content-type", "application/json"), hdr("accept", "application/json, text/event-stream"),
		hdr("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		hdr("x-forwarded-proto", "http"), hdr("x-request-id", "8a1c4d6e-1111-2222-3333-444455556666"),
	}
	if token != "" {
		hs = append(hs, hdr("authorization", "Bearer "+token))
	}
	return append(hs, extra...)
}

func getHeaders(path, token string) []extproctest.Header {
	hs := []extproctest.Header{
		hdr(":authority", "127.0.0.1:8080"), hdr(":path", path), hdr(":method", "GET"), hdr(":scheme", "http"),
		hdr("accept", "text/event-stream"), hdr("cache-control", "no-cache"),
	}
	if token != "" {
		hs = append(hs, hdr("authorization", "Bearer "+token))
	}
	return hs
}

func respHeaders(status, contentType string, extra ...extproctest.Header) []extproctest.Header {
	hs := []extproctest.Header{hdr(":status", status)}
	if contentType != "" {
		hs = append(hs, hdr("content-type", contentType))
	}
	return append(hs, extra...)
}

// anyOf packs policies as the xDS client hands them to the handler.
func anyOf(policies ...*policyv1.Policy) (map[string]*anypb.Any, error) {
	out := map[string]*anypb.Any{}
	for _, p := range policies {
		a, err := anypb.New(p)
		if err != nil {
			return nil, err
		}
		out[p.GetName()] = a
	}
	return out, nil
}

func hdr(name, value string) extproctest.Header { return extproctest.Header{Name: name, Value: value} }
