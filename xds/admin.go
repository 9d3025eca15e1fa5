package xds

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/internal/admin"
)

// AdminHandler serves the admin endpoints of a control plane that serves s: /metrics (of
// metrics), /healthz (the process is up), /readyz (200 when awaited returns "", else 503 saying
// what it returns) and /debug/xds (DebugHandler with redact, loopback clients only), listed at /.
// `mcpgate run` and `mcpgate controller` serve it at their --admin-addr.
func (s *Server) AdminHandler(metrics prometheus.Gatherer, awaited func() string, redact func(proto.Message) proto.Message) http.Handler {
	m := admin.New(metrics, awaited)
	m.Handle("/debug/xds", "the served xDS resources and policies per Gateway, as JSON (secrets redacted; loopback clients only)",
		admin.LocalOnly(s.DebugHandler(redact)))
	return m
}
