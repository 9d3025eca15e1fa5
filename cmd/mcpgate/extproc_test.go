package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/internal/extprocrun"
	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/internal/syncbuf"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
	"github.com/mcpgate/mcpgate/xds"

	"github.com/mcpgate/mcpgate/internal/freeport"
)

// TestNewMuxOptions: the mux flags reach the mux's options (extprocrun.NewMux), each set to a value other
// than its default.
func TestNewMuxOptions(t *testing.T) {
	f, err := parseExtProcFlags([]string{"--max-body-bytes", "1000", "--mux-resolve-timeout", "3s", "--mux-resolve-cache-ttl", "7s",
		"--mux-sse-idle-timeout", "11m", "--mux-max-sse-sessions", "13", "--mux-max-sse-sessions-per-caller", "5"})
	if err != nil {
		t.Fatal(err)
	}
	o := extprocrun.NewMux(func(string) string { return "" }, "s3cret", slog.New(slog.DiscardHandler), prometheus.NewRegistry(), &f.Options).Options()
	const form = "max body %d, resolve timeout %v, resolve cache TTL %v, SSE idle timeout %v, SSE sessions %d, per caller %d, secret %q, version %q"
	got := fmt.Sprintf(form, o.MaxBodyBytes, o.ResolveTimeout, o.ResolveCacheTTL, o.SSEIdleTimeout, o.MaxSSESessions, o.MaxSSESessionsPerCaller, o.Secret, o.Version)
	if want := fmt.Sprintf(form, 1000, 3*time.Second, 7*time.Second, 11*time.Minute, 13, 5, "s3cret", version); got != want {
		t.Errorf("mux options from the flags: %s, want %s", got, want)
	}
}

func TestExtProcFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", ""},
		{"--listen", "garbage"},
		{"--xds-addr", "::::"},
		{"--xds-addr", "unix://relative"},
		{"--otlp-endpoint", "::bad"},
		{"--otlp-endpoint", "ftp://collector:4317"},
		{"--uds", "/run/x.sock"},
		{"--gateway", "nons"},
		{"--max-body-bytes", "0"},
		{"--max-body-bytes", "4294967000"}, // more than Envoy's largest HTTP/2 stream window
		{"--policy-wait", "-1s"},
		{"--mux-resolve-cache-ttl", "-1s"},
		{"--mux-sse-idle-timeout", "0"},
		{"--mux-max-sse-sessions", "0"},
		{"--mux-max-sse-sessions-per-caller", "-1"},
		{"--log-level", "loud"},
		{"extra"},
		{"--envoy-stats-url", "127.0.0.1:15000/stats/prometheus"},
		{"--envoy-stats-url", "http://127.0.0.1:15000/stats/prometheus", "--admin-addr", ""},
		{"--drain-envoy-admin", "127.0.0.1:15000"}, // no --session-key-file: no token
		{"--drain-envoy-admin", "127.0.0.1:15000", "--session-key-file", "/k", "--admin-addr", ""},
		{"--drain-envoy-admin", "unix:///run/envoy.sock", "--session-key-file", "/k"},
		{"--drain-min", "0"},
		{"--drain-min", "20s", "--drain-max", "10s"},
	} {
		if _, err := parseExtProcFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if f, err := parseExtProcFlags([]string{"--drain-envoy-admin", "127.0.0.1:15000", "--session-key-file", "/k"}); err != nil || f.config().DrainEnvoyAdmin != "127.0.0.1:15000" {
		t.Errorf("--drain-envoy-admin with a session key: %v %v", f, err)
	}
	f, err := parseExtProcFlags([]string{"--gateway", "agentgateway-system/agentgateway"})
	if err != nil || !slices.Equal(f.listen, []string{"127.0.0.1:18001"}) || f.xdsAddr != "127.0.0.1:18000" || f.MaxBodyBytes != 4<<20 || !slices.Equal(f.RedactKeys, extproc.DefaultRedactKeys()) {
		t.Errorf("defaults: %+v %v", f, err)
	}
	if f.logLevel != slog.LevelInfo || f.PolicyWait != extproc.DefaultPolicyWait {
		t.Errorf("default log level %v, policy wait %v", f.logLevel, f.PolicyWait)
	}
	if f, err := parseExtProcFlags([]string{"--listen", "unix:///run/x.sock", "--listen", "127.0.0.1:1"}); err != nil || !slices.Equal(f.listen, []string{"unix:///run/x.sock", "127.0.0.1:1"}) {
		t.Errorf("--listen twice: %v %v", f, err)
	}
	if f.MuxSSEIdleTimeout != mux.DefaultSSEIdleTimeout || f.MuxMaxSSESessions != mux.DefaultMaxSSESessions {
		t.Errorf("default --mux-sse-idle-timeout %v, --mux-max-sse-sessions %d; want %v, %d", f.MuxSSEIdleTimeout, f.MuxMaxSSESessions, mux.DefaultSSEIdleTimeout, mux.DefaultMaxSSESessions)
	}
	if f.MuxMaxSSESessionsPerCaller != mux.DefaultMaxSSESessionsPerCaller {
		t.Errorf("default --mux-max-sse-sessions-per-caller %d, want %d", f.MuxMaxSSESessionsPerCaller, mux.DefaultMaxSSESessionsPerCaller)
	}
	if f, err := parseExtProcFlags([]string{"--mux-max-sse-sessions-per-caller", "0"}); err != nil || f.MuxMaxSSESessionsPerCaller != 0 {
		t.Errorf("--mux-max-sse-sessions-per-caller 0 (the default): %v %v", f, err)
	}
	if _, err := parseExtProcFlags([]string{"--mux-max-sse-sessions-per-caller", "-1"}); err == nil || !strings.Contains(err.Error(), "--mux-max-sse-sessions-per-caller") {
		t.Errorf("--mux-max-sse-sessions-per-caller -1: %v, want an error naming the flag", err)
	}
	if f.MuxResolveCacheTTL != mux.DefaultResolveCacheTTL {
		t.Errorf("default --mux-resolve-cache-ttl %v, want %v", f.MuxResolveCacheTTL, mux.DefaultResolveCacheTTL)
	}
	if f, err := parseExtProcFlags([]string{"--mux-resolve-cache-ttl", "0"}); err != nil || f.MuxResolveCacheTTL != 0 {
		t.Errorf("--mux-resolve-cache-ttl 0 must turn the cache off: %v %v", f, err)
	}
	if f, err := parseExtProcFlags([]string{"--policy-wait", "0"}); err != nil || f.PolicyWait >= 0 {
		t.Errorf("--policy-wait 0 must turn the wait off: %v %v", f, err)
	}
	if f, err := parseExtProcFlags([]string{"--log-level", "debug"}); err != nil || f.logLevel != slog.LevelDebug {
		t.Errorf("--log-level debug: %v %v", f, err)
	}
	if f, err := parseExtProcFlags([]string{"--redact-keys", ""}); err != nil || f.RedactKeys == nil || len(f.RedactKeys) != 0 {
		t.Errorf(`--redact-keys "": %q %v, want an empty list (no redaction), not nil (the default)`, f.RedactKeys, err)
	}
	if _, err := parseExtProcFlags([]string{"--redact-keys", "token,_"}); err == nil || !strings.Contains(err.Error(), `--redact-keys: key "_"`) {
		t.Errorf(`--redact-keys "token,_": %v, want a refusal naming the key`, err)
	}
	f, err = parseExtProcFlags([]string{"--redact-keys", "apiKey, token ,,password"})
	if err != nil || strings.Join(f.RedactKeys, "|") != "apiKey|token|password" {
		t.Errorf("--redact-keys: %q %v", f.RedactKeys, err)
	}
}

// freePort returns an address free on 127.0.0.1 for a server the test starts (freeport).
func freePort(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestServeExtProc runs `mcpgate extproc` against a real xDS server: it is not ready (503)
// before its gateway's policies arrive and becomes ready once they do, serves ext_proc on its
// Unix socket, writes audit lines to the file and stops cleanly.
func TestServeExtProc(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	x := xds.New(log)
	xlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	x.Register(gs)
	go gs.Serve(xlis)
	defer gs.Stop()
	dir := t.TempDir()
	sock, auditPath, admin := filepath.Join(dir, "ep.sock"), filepath.Join(dir, "audit.log"), freePort(t)
	f, err := parseExtProcFlags([]string{"--listen", "unix://" + sock, "--xds-addr", xlis.Addr().String(),
		"--gateway", "agentgateway-system/agentgateway", "--admin-addr", admin, "--audit-log", auditPath})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- extprocrun.Serve(ctx, f.config(), log, io.Discard) }()

	// Not ready until the gateway's policies arrive.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("/readyz answers %d before any policy arrived, want 503", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin endpoint never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	open := &policyv1.Policy{Name: "open"}
	if err := x.Update(map[string]map[string][]proto.Message{"agentgateway-system/agentgateway": {contract.PolicyTypeURL: {open}}}); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready (last: %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `mcpgate_extproc_policy_updates_total{result="ack"} 1`) {
		t.Errorf("metrics lack the policy ACK:\n%s", metrics)
	}

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := extproctest.Open(ctx, extprocv3.NewExternalProcessorClient(conn), extproctest.Route{Route: "ns/r/rule/0", Policy: "open", MCP: "streamable-http"})
	if err != nil {
		t.Fatal(err)
	}
	hs := []extproctest.Header{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/mcp"}, {Name: "content-type", Value: "application/json"}}
	if _, err := s.RequestHeaders(hs, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestBody([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResponseHeaders([]extproctest.Header{{Name: ":status", Value: "202"}}, true); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("extprocrun.Serve: %v", err)
	}
	audit, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"method":"notifications/initialized"`) || !strings.Contains(string(audit), `"http_status":202`) {
		t.Errorf("audit log = %s", audit)
	}
}

// TestServeExtProcStartFailure: when a later step of the start fails (here the audit file), the
// listeners opened before it are closed again.
func TestServeExtProcStartFailure(t *testing.T) {
	dir := t.TempDir()
	sock, admin := filepath.Join(dir, "ep.sock"), freePort(t)
	f, err := parseExtProcFlags([]string{"--listen", "unix://" + sock, "--admin-addr", admin,
		"--audit-log", filepath.Join(dir, "missing", "audit.log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := extprocrun.Serve(t.Context(), f.config(), slog.New(slog.DiscardHandler), io.Discard); err == nil || !strings.Contains(err.Error(), "--audit-log") {
		t.Fatalf("extprocrun.Serve = %v, want the audit file's error", err)
	}
	l, err := net.Listen("tcp", admin)
	if err != nil {
		t.Fatalf("admin address still held after the failed start: %v", err)
	}
	defer l.Close()
	// An address in use is named with its flag.
	for _, args := range [][]string{{"--listen", l.Addr().String()}, {"--listen", "unix://" + sock, "--admin-addr", l.Addr().String()}} {
		f, err := parseExtProcFlags(args)
		if err != nil {
			t.Fatal(err)
		}
		if err := extprocrun.Serve(t.Context(), f.config(), slog.New(slog.DiscardHandler), io.Discard); err == nil || !strings.Contains(err.Error(), args[len(args)-2]+": ") {
			t.Errorf("%q: %v, want an error naming %s", args, err, args[len(args)-2])
		}
	}
}

// TestServeExtProcXDSTLS: with --xds-tls-dir, as the Kubernetes sidecar runs it, ext_proc
// subscribes over mutual TLS with the Gateway's certificate and gets its Gateway's policies from
// a server that binds node groups to certificates; with another Gateway's certificate the server
// refuses it and it stays unready.
func TestServeExtProcXDSTLS(t *testing.T) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	var serverLog syncbuf.Buffer
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	xlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := ca.ServerConfig(xlis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	x := xds.New(slog.New(slog.NewTextHandler(&serverLog, nil)))
	creds, err := x.MutualTLS(serverTLS, pki.GatewayOf)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(xds.GRPCServerOptions(), creds)...)
	x.Register(gs)
	go gs.Serve(xlis)
	defer gs.Stop()
	const gw = "agentgateway-system/agentgateway"
	if err := x.Update(map[string]map[string][]proto.Message{gw: {contract.PolicyTypeURL: {&policyv1.Policy{Name: "open"}}}}); err != nil {
		t.Fatal(err)
	}
	// run serves ext_proc for gw with the certificate of gateway until check returns.
	run := func(gateway string, check func(readyz func() int)) {
		t.Helper()
		certs := t.TempDir()
		c, k, err := ca.IssueGateway(gateway, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{pki.CertFile: c, pki.KeyFile: k, pki.CAFile: ca.CertPEM} {
			if err := os.WriteFile(filepath.Join(certs, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		admin := freePort(t)
		f, err := parseExtProcFlags([]string{"--listen", "unix://" + filepath.Join(t.TempDir(), "ep.sock"), "--xds-addr", xlis.Addr().String(),
			"--gateway", gw, "--admin-addr", admin, "--xds-tls-dir", certs})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- extprocrun.Serve(ctx, f.config(), discard, io.Discard) }()
		check(func() int {
			resp, err := http.Get("http://" + admin + "/readyz")
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("extprocrun.Serve: %v", err)
		}
	}
	run(gw, func(readyz func() int) {
		eventually(t, "ext_proc ready with its Gateway's certificate", func() error {
			if code := readyz(); code != http.StatusOK {
				return fmt.Errorf("/readyz %d", code)
			}
			return nil
		})
	})
	run("other/gw", func(readyz func() int) {
		eventually(t, "the server refusing another Gateway's certificate", func() error {
			if !strings.Contains(serverLog.String(), "xDS client refused") || !strings.Contains(serverLog.String(), "other/gw") {
				return fmt.Errorf("server log: %s", serverLog.String())
			}
			return nil
		})
		if code := readyz(); code != http.StatusServiceUnavailable {
			t.Errorf("with another Gateway's certificate: /readyz %d, want 503", code)
		}
	})
	if _, err := pki.ClientTLS(t.TempDir(), "x"); err == nil {
		t.Error("an empty --xds-tls-dir was accepted")
	}
}
