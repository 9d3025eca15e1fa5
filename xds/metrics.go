package xds

import (
	"errors"
	"slices"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/contract"
)

// servedTypes are the type URLs the translator's snapshots hold.
func servedTypes() []string {
	return []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, contract.PolicyTypeURL}
}

// otherType is the type_url label of the NACKs of the type URLs the server does not serve
// (nackLabel).
const otherType = "other"

// nackLabel returns the type_url label of a NACK of typeURL: typeURL when it is one of
// servedTypes, else otherType. The type URL is the client's, which may be any string: a
// series each would grow without bound.
func nackLabel(typeURL string) string {
	if slices.Contains(servedTypes(), typeURL) {
		return typeURL
	}
	return otherType
}

// metrics are the server's Prometheus metrics. They exist whether or not they are registered.
type metrics struct {
	version prometheus.Gauge
	groups  prometheus.Gauge
	streams *prometheus.GaugeVec
	nacks   *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_xds_snapshot_version", Help: "Version of the last snapshot pushed (the value of the push counter).",
		}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_xds_node_groups", Help: "Node groups served (one per gateway, plus *).",
		}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpgate_xds_streams", Help: "Open ADS streams, by protocol (sotw or delta).",
		}, []string{"api"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_xds_nacks_total", Help: "Responses rejected by clients (NACKs), by type URL (\"other\" for a type URL that is not served).",
		}, []string{"type_url"}),
	}
}

// RegisterMetrics registers the server's metrics with reg: the version pushed, the node groups,
// the open streams and the NACKs (at 0 for each type served until one comes).
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	for _, typeURL := range servedTypes() {
		s.m.nacks.WithLabelValues(typeURL)
	}
	var errs []error
	for _, c := range []prometheus.Collector{s.m.version, s.m.groups, s.m.streams, s.m.nacks} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}
