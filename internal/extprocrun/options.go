// Package extprocrun runs the ext_proc service as mcpgate's commands do: the settings that
// `mcpgate extproc` and `mcpgate run` share (Options) and the server they open with them
// (Options.Start: session key, audit destination, OTLP spans), the mux of multiplexed MCP backends
// beside it (NewMux, NewMuxSecret, ListenMux, ServeMux), and `mcpgate extproc` itself, the data
// plane's sidecar (Serve). Errors name the flags of the commands that set what failed.
package extprocrun

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
)

// Options are the ext_proc settings that `mcpgate extproc` and `mcpgate run` share, as their
// flags set them (checked there).
type Options struct {
	// AuditLog is where the JSON audit lines go (--audit-log): "stdout" (or "-"), "none" (or
	// ""), or a file path, appended to.
	AuditLog string
	// OTLPEndpoint is the OTLP gRPC collector of the spans (--otlp-endpoint); "": the
	// OTEL_EXPORTER_OTLP_* variables' collector, none when they are empty too.
	OTLPEndpoint string
	// SessionKeyFile holds the key sealing MCP session ids (--session-key-file; "": a key of
	// the process).
	SessionKeyFile string
	// MaxBodyBytes is the largest MCP request body read (--max-body-bytes).
	MaxBodyBytes int
	// PolicyWait is extproc.Config.PolicyWait: 0 is the default wait, a negative value none.
	PolicyWait time.Duration
	// MuxResolveTimeout bounds the resolution of a prefixMode Never call's target
	// (--mux-resolve-timeout, mux.Options.ResolveTimeout).
	MuxResolveTimeout time.Duration
	// MuxResolveCacheTTL is how long a resolution is kept (--mux-resolve-cache-ttl,
	// mux.Options.ResolveCacheTTL; 0: no cache).
	MuxResolveCacheTTL time.Duration
	// MuxSSEIdleTimeout closes an idle session of an SSE target of the mux, or of an HTTP+SSE
	// client of it (--mux-sse-idle-timeout, mux.Options.SSEIdleTimeout); MuxMaxSSESessions bounds
	// each kind (--mux-max-sse-sessions, mux.Options.MaxSSESessions), and
	// MuxMaxSSESessionsPerCaller those of one caller (--mux-max-sse-sessions-per-caller,
	// mux.Options.MaxSSESessionsPerCaller; 0: mux.DefaultMaxSSESessionsPerCaller).
	MuxSSEIdleTimeout          time.Duration
	MuxMaxSSESessions          int
	MuxMaxSSESessionsPerCaller int
	// RedactKeys are the keys of --redact-keys (extproc.Redact.Keys: empty, not nil, for none).
	RedactKeys []string
	// Version is the mcpgate version the mux tells the targets (mux.Options.Version).
	Version string
}

// Start opens the audit destination (stdout is what "stdout" names) and the OTLP exporter, and
// returns the ext_proc server of base (addresses, node, logger, registry) with o's settings, and
// the function that closes the server, flushes the spans and closes the audit file, in that
// order. On error everything opened is closed again.
func (o *Options) Start(ctx context.Context, base extproc.Config, stdout io.Writer) (*extproc.Server, func(), error) {
	if o.SessionKeyFile != "" {
		key, err := o.sessionKey()
		if err != nil {
			return nil, nil, err
		}
		base.SessionKey = key
	}
	audit, closeAudit, err := openAudit(o.AuditLog, stdout)
	if err != nil {
		return nil, nil, err
	}
	tp, flush, err := tracerProvider(ctx, o.OTLPEndpoint, base.Logger)
	if err != nil {
		closeAudit()
		return nil, nil, err
	}
	base.MaxBodyBytes, base.Audit, base.TracerProvider = o.MaxBodyBytes, audit, tp
	base.Redact = extproc.Redact{Keys: o.RedactKeys}
	base.PolicyWait = o.PolicyWait
	srv, err := extproc.New(base)
	if err != nil {
		flush()
		closeAudit()
		return nil, nil, err
	}
	return srv, func() {
		srv.Close()
		flush()
		closeAudit()
	}, nil
}

// sessionKey reads the key of SessionKeyFile.
func (o *Options) sessionKey() ([]byte, error) {
	key, err := os.ReadFile(o.SessionKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--session-key-file: %w", err)
	}
	if len(key) < bind.KeySize {
		return nil, fmt.Errorf("--session-key-file %s: %d bytes; a session key has at least %d", o.SessionKeyFile, len(key), bind.KeySize)
	}
	return key, nil
}

// tracerProvider returns the OTLP tracer provider of --otlp-endpoint or the OTEL_EXPORTER_OTLP_*
// variables, and the function that flushes and stops it; nil (no spans) when none is set.
func tracerProvider(ctx context.Context, endpoint string, log *slog.Logger) (trace.TracerProvider, func(), error) {
	if endpoint == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, func() {}, nil
	}
	sdk, err := telemetry.NewOTLPTracerProvider(ctx, endpoint)
	if err != nil {
		return nil, nil, err
	}
	return sdk, func() {
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		if err := sdk.Shutdown(sctx); err != nil && log != nil {
			log.Warn("flushing spans", "error", err)
		}
	}, nil
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
