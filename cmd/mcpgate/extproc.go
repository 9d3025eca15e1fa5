package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// extProcFlags are the flags of `mcpgate extproc`.
type extProcFlags struct {
	// listen are the addresses ext_proc is served on (--listen, or its default).
	listen                                          []string
	xdsAddr, gateway, nodeID, admin, auditLog, otlp string
	maxBody                                         int
	policyWait                                      time.Duration
	logLevel                                        slog.Level
	// redactKeys are the keys of --redact-keys, trimmed (empty, not nil, when the flag is "").
	redactKeys []string
}

func parseExtProcFlags(args []string) (*extProcFlags, error) {
	f := &extProcFlags{}
	var redact string
	fs := flag.NewFlagSet("mcpgate extproc", flag.ContinueOnError)
	var listen stringList
	fs.Var(&listen, "listen", `where to serve ext_proc: HOST:PORT or unix:///PATH (repeatable; default `+bootstrap.DefaultExtProcAddr+`; the sidecar deployment serves only a Unix socket)`)
	fs.StringVar(&f.xdsAddr, "xds-addr", "127.0.0.1:18000", `control plane ADS address to get policies from ("HOST:PORT" or "unix:///PATH")`)
	fs.StringVar(&f.gateway, "gateway", contract.AllGateways, `the gateway served, NS/NAME (its xDS node group), or "*" for every gateway`)
	fs.StringVar(&f.nodeID, "node-id", "", "xDS node id (default: the host name)")
	fs.StringVar(&f.admin, "admin-addr", "127.0.0.1:19002", `where to serve /metrics, /healthz and /readyz ("" for none)`)
	fs.IntVar(&f.maxBody, "max-body-bytes", extproc.DefaultMaxBodyBytes, "largest MCP request body read; a larger one is refused with 413")
	fs.StringVar(&f.auditLog, "audit-log", "stdout", `where the JSON audit lines go: "stdout", "none" or a file path (appended)`)
	fs.StringVar(&f.otlp, "otlp-endpoint", "", "OTLP gRPC collector for spans (http://HOST:4317 without TLS); default OTEL_EXPORTER_OTLP_ENDPOINT; none when both are empty")
	fs.DurationVar(&f.policyWait, "policy-wait", extproc.DefaultPolicyWait, "how long a request whose route names a policy not received yet waits for it before a 500 (0: no wait); keep it under the routes' ext_proc message timeout (10s)")
	logLevelFlag(fs, &f.logLevel)
	fs.StringVar(&redact, "redact-keys", strings.Join(extproc.DefaultRedactKeys(), ","), `comma-separated tool argument keys (any depth, any case) whose values the audit log and access log replace by [REDACTED]; "" for none`)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	f.listen = listen
	if len(f.listen) == 0 {
		f.listen = []string{bootstrap.DefaultExtProcAddr}
	}
	if slices.Contains(f.listen, "") {
		return nil, errors.New(`--listen "": want HOST:PORT or unix:///PATH`)
	}
	if f.gateway != contract.AllGateways && strings.Count(f.gateway, "/") != 1 {
		return nil, fmt.Errorf("--gateway %q: want NAMESPACE/NAME or *", f.gateway)
	}
	if f.policyWait < 0 {
		return nil, fmt.Errorf("--policy-wait %s: must not be negative", f.policyWait)
	}
	if f.maxBody <= 0 {
		return nil, fmt.Errorf("--max-body-bytes %d: must be positive", f.maxBody)
	}
	f.redactKeys = []string{} // "" redacts nothing; nil would mean extproc's default
	for _, k := range strings.Split(redact, ",") {
		if k = strings.TrimSpace(k); k != "" {
			f.redactKeys = append(f.redactKeys, k)
		}
	}
	return f, nil
}

// policyWait maps --policy-wait to extproc.Config.PolicyWait, where 0 means the default and a
// negative value no wait.
func policyWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// runExtProc serves ext_proc alone, as the sidecar next to a gateway's Envoy does.
func runExtProc(ctx context.Context, args []string) error {
	f, err := parseExtProcFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: f.logLevel}))
	return serveExtProc(ctx, f, log, os.Stdout)
}

func serveExtProc(ctx context.Context, f *extProcFlags, log *slog.Logger, stdout io.Writer) error {
	var listeners []net.Listener
	for _, addr := range f.listen {
		lis, err := extproc.Listen(addr)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		defer lis.Close()
		listeners = append(listeners, lis)
	}
	var adminLis net.Listener
	if f.admin != "" {
		var err error
		if adminLis, err = net.Listen("tcp", f.admin); err != nil {
			return fmt.Errorf("--admin-addr: %w", err)
		}
		defer adminLis.Close()
	}

	audit, closeAudit, err := openAudit(f.auditLog, stdout)
	if err != nil {
		return err
	}
	defer closeAudit()

	var tp trace.TracerProvider
	if f.otlp != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		sdk, err := telemetry.NewOTLPTracerProvider(ctx, f.otlp)
		if err != nil {
			return err
		}
		defer func() {
			sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
			defer stop()
			if err := sdk.Shutdown(sctx); err != nil {
				log.Warn("flushing spans", "error", err)
			}
		}()
		tp = sdk
	}

	reg := newRegistry()
	srv, err := extproc.New(extproc.Config{
		XDSAddr: f.xdsAddr, NodeCluster: f.gateway, NodeID: f.nodeID, MaxBodyBytes: f.maxBody,
		Audit: audit, Logger: log, Registerer: reg, TracerProvider: tp,
		Redact: extproc.Redact{Keys: f.redactKeys}, PolicyWait: policyWait(f.policyWait),
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	t := newTasks(ctx)
	t.run("ext_proc", func() error { return srv.Serve(t.ctx, listeners...) })
	t.run("policies", func() error { return srv.Run(t.ctx) })
	t.onStop(func() { log.Info("shutting down") })
	if adminLis != nil {
		t.serveHTTP("admin", adminLis, srv.AdminHandler(reg))
	}
	log.Info("mcpgate extproc", "listen", strings.Join(f.listen, ","), "xds", f.xdsAddr, "gateway", f.gateway, "admin", f.admin)
	if err := t.wait(); err != nil {
		log.Error("stopped", "error", err)
		return err
	}
	return nil
}

// openAudit returns the audit writer of --audit-log.
func openAudit(dest string, stdout io.Writer) (io.Writer, func(), error) {
	switch dest {
	case "stdout", "-":
		return stdout, func() {}, nil
	case "none", "":
		return nil, func() {}, nil
	}
	file, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("--audit-log: %w", err)
	}
	return file, func() { file.Close() }, nil
}
