package extproc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/admin"
)

// AdminHandler serves /metrics (from g), /healthz (the process is up) and /readyz (a first policy
// update was applied: Ready), listed at /, for `mcpgate extproc --admin-addr`; the caller may add more.
func (s *Server) AdminHandler(g prometheus.Gatherer) *admin.Mux {
	return admin.New(g, admin.Awaiting(s.Ready, "no policies received from the control plane yet"))
}
