package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
)

// spanCollector is an OTLP gRPC trace collector (the real protocol, in process) that keeps the
// names of the spans it receives.
type spanCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (c *spanCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.names = append(c.names, s.GetName())
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (c *spanCollector) spans() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.names...)
}

// labWithoutPolicies copies the lab's Gateway and route, without its JWT and CEL policies.
func labWithoutPolicies(t *testing.T) string {
	t.Helper()
	dir := copyLab(t)
	for _, f := range []string{"jwt.yaml", "rbac.yaml"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRunExtProcOptions: `mcpgate run` configures its ext_proc as `mcpgate extproc` does: spans
// go to the collector of OTEL_EXPORTER_OTLP_ENDPOINT, audit lines to --audit-log,
// --redact-keys names the arguments hidden there and --session-key-file seals session ids.
func TestRunExtProcOptions(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &spanCollector{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, c)
	go gs.Serve(lis)
	defer gs.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())

	auditPath := filepath.Join(t.TempDir(), "audit.log")
	keyPath := filepath.Join(t.TempDir(), "session-key")
	key := []byte(strings.Repeat("k", bind.KeySize))
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startRun(t, "-f", labWithoutPolicies(t), "--no-envoy", "--audit-log", auditPath, "--redact-keys", "apiKey", "--session-key-file", keyPath)

	conn, err := grpc.NewClient(s.cfg.extProcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := extproctest.Open(t.Context(), extprocv3.NewExternalProcessorClient(conn),
		extproctest.Route{Gateway: labGateway, Route: "agentgateway-system/mcp/rule/0", MCP: "streamable-http"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	post := []extproctest.Header{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/mcp"}, {Name: "content-type", Value: "application/json"}}
	if _, err := st.RequestHeaders(post, false); err != nil {
		t.Fatal(err)
	}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://x","apiKey":"sk-hidden","password":"shown"}}}`
	if _, err := st.RequestBody([]byte(call), true); err != nil {
		t.Fatal(err)
	}
	resp, err := st.ResponseHeaders([]extproctest.Header{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/json"}, {Name: "mcp-session-id", Value: "S1"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	// The session id is sealed with the key of --session-key-file.
	b, err := bind.New(key)
	if err != nil {
		t.Fatal(err)
	}
	if set := resp.GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders(); len(set) != 1 || string(set[0].GetHeader().GetRawValue()) != b.Seal("S1", bind.Caller{}) {
		t.Errorf("the session id is not sealed with the key of --session-key-file: %v", set)
	}
	if _, err := st.ResponseBody([]byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`), true); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Stopping flushes the spans.
	if err := s.shutdown(); err != nil {
		t.Fatalf("standalone.Serve: %v", err)
	}
	if got := c.spans(); len(got) != 1 || got[0] != "tools/call fetch" {
		t.Errorf("the collector got the spans %q, want one tools/call fetch", got)
	}
	audit, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"tool":"fetch"`) || strings.Contains(string(audit), "sk-hidden") || !strings.Contains(string(audit), `"shown"`) {
		t.Errorf("audit log (want the call, apiKey redacted, password kept as --redact-keys names only apiKey):\n%s", audit)
	}
}

// TestRunBindAddressAndBodyLimit: --bind-address is the address the served listeners bind and
// --max-body-bytes sets Envoy's buffer limit with ext_proc's.
func TestRunBindAddressAndBodyLimit(t *testing.T) {
	s := startRun(t, "-f", labWithoutPolicies(t), "--no-envoy", "--bind-address", "127.0.0.2", "--max-body-bytes", "1048576")
	_, body, err := get("http://" + s.cfg.admin + "/debug/xds")
	if err != nil {
		t.Fatal(err)
	}
	body = strings.Join(strings.Fields(body), "") // the JSON without its indentation
	if !strings.Contains(body, `"address":"127.0.0.2"`) || strings.Contains(body, `"address":"127.0.0.1","portValue":8080`) {
		t.Errorf("the listener does not bind 127.0.0.2:\n%s", body)
	}
	// The listener's buffer limit is the body limit plus the translator's slack (64 KiB).
	if want := strconv.Itoa(1<<20 + 64<<10); !strings.Contains(body, `"perConnectionBufferLimitBytes":`+want) {
		t.Errorf("no perConnectionBufferLimitBytes %s:\n%s", want, body)
	}
}

// TestRunDataPlaneNotice: without an Envoy, `mcpgate run` warns that no data plane runs, unless
// --no-envoy says so; both say how to start one.
func TestRunDataPlaneNotice(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no envoy on PATH
	dir := labWithoutPolicies(t)
	for _, c := range []struct {
		args []string
		warn bool
	}{{[]string{"-f", dir}, true}, {[]string{"-f", dir, "--no-envoy"}, false}} {
		s := startRun(t, c.args...)
		if err := s.shutdown(); err != nil {
			t.Fatalf("standalone.Serve: %v", err)
		}
		logs := s.logs.String()
		if warned := strings.Contains(logs, "level=WARN") && strings.Contains(logs, "no data plane runs"); warned != c.warn {
			t.Errorf("%q: warned %v, want %v:\n%s", c.args, warned, c.warn, logs)
		}
		if !strings.Contains(logs, "mcpgate bootstrap --gateway NS/NAME --xds-addr "+s.cfg.xdsAddr) {
			t.Errorf("%q: no word on starting a data plane:\n%s", c.args, logs)
		}
	}
}
