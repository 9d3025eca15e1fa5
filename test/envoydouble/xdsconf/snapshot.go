package xdsconf

import (
	"errors"
	"fmt"
	"maps"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The xDS type URLs the double subscribes to.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Snapshot is the active configuration. It is immutable: every update builds a new one, so a
// request keeps the configuration it started with while new requests see the new one.
type Snapshot struct {
	// Listeners are the bootstrap's and the LDS listeners, by name.
	Listeners map[string]*Listener
	// Routes are the RDS route configurations, by name (inline ones stay in their HCM).
	Routes map[string]*RouteConfig
	// Clusters are the bootstrap's and the CDS clusters, by name.
	Clusters map[string]*Cluster
	// Assignments are the EDS load assignments, by cluster_name (a cluster's EDSName).
	Assignments map[string]*LoadAssignment
	// Secrets are the SDS Secrets (TLS certificates), by name.
	Secrets map[string]*Secret
	// Static holds the names of bootstrap clusters and listeners, which xDS cannot change.
	Static map[string]bool
	// Raw holds the accepted resources by type URL then name, for the admin config_dump.
	Raw map[string]map[string]proto.Message
}

// NewSnapshot starts from the bootstrap's static resources.
func NewSnapshot(b *Bootstrap) *Snapshot {
	s := &Snapshot{Listeners: maps.Clone(b.Listeners), Routes: map[string]*RouteConfig{},
		Clusters: maps.Clone(b.Clusters), Assignments: map[string]*LoadAssignment{}, Secrets: map[string]*Secret{}, Static: map[string]bool{},
		Raw: map[string]map[string]proto.Message{}}
	for n := range b.Listeners {
		s.Static["listener/"+n] = true
	}
	for n := range b.Clusters {
		s.Static["cluster/"+n] = true
	}
	return s
}

// Apply returns the snapshot with the state of one type replaced by resources (the full set of
// that type, as the ADS client keeps it). Like Envoy, each resource is accepted or rejected on its
// own: a rejected resource keeps its previous version, and the error names every rejected one (the
// NACK's error_detail). Resources absent from the set are removed.
func (s *Snapshot) Apply(typeURL string, resources map[string]*anypb.Any) (*Snapshot, error) {
	n := s.clone()
	var errs []error
	names := make([]string, 0, len(resources))
	for name := range resources {
		names = append(names, name)
	}
	sort.Strings(names)
	raw := map[string]proto.Message{}
	switch typeURL {
	case ListenerType:
		apply(n.Listeners, s.Listeners, names, resources, raw, s.Raw[typeURL], &errs, "listener", n.Static, func(m *listenerv3.Listener) (*Listener, string, error) {
			l, err := CompileListener(m)
			return l, m.GetName(), err
		})
	case RouteType:
		apply(n.Routes, s.Routes, names, resources, raw, s.Raw[typeURL], &errs, "route", nil, func(m *routev3.RouteConfiguration) (*RouteConfig, string, error) {
			r, err := CompileRouteConfig(m)
			return r, m.GetName(), err
		})
	case ClusterType:
		apply(n.Clusters, s.Clusters, names, resources, raw, s.Raw[typeURL], &errs, "cluster", n.Static, func(m *clusterv3.Cluster) (*Cluster, string, error) {
			c, err := CompileCluster(m)
			return c, m.GetName(), err
		})
	case EndpointType:
		apply(n.Assignments, s.Assignments, names, resources, raw, s.Raw[typeURL], &errs, "endpoints", nil, func(m *endpointv3.ClusterLoadAssignment) (*LoadAssignment, string, error) {
			a, err := CompileLoadAssignment(m)
			return a, m.GetClusterName(), err
		})
	case SecretType:
		apply(n.Secrets, s.Secrets, names, resources, raw, s.Raw[typeURL], &errs, "secret", nil, func(m *tlsv3.Secret) (*Secret, string, error) {
			c, err := CompileSecret(m)
			return c, m.GetName(), err
		})
	default:
		return s, fmt.Errorf("type %s not implemented by envoydouble", typeURL)
	}
	n.Raw[typeURL] = raw
	return n, errors.Join(errs...)
}

func apply[M any, PM interface {
	*M
	proto.Message
}, T any](dst, old map[string]T, names []string, resources map[string]*anypb.Any, raw, oldRaw map[string]proto.Message,
	errs *[]error, kind string, static map[string]bool, compile func(PM) (T, string, error)) {
	for name := range dst {
		if !static[kind+"/"+name] {
			if _, ok := resources[name]; !ok {
				delete(dst, name)
			}
		}
	}
	for _, name := range names {
		if static[kind+"/"+name] {
			*errs = append(*errs, fmt.Errorf("%s %q: a static resource of the bootstrap cannot be changed over xDS", kind, name))
			continue
		}
		m := PM(new(M))
		if err := resources[name].UnmarshalTo(m); err != nil {
			*errs = append(*errs, fmt.Errorf("%s %q: %w", kind, name, err))
			continue
		}
		if prev, ok := old[name]; ok && oldRaw[name] != nil && proto.Equal(oldRaw[name], m) {
			// Envoy leaves a resource whose content did not change as it is (it compares
			// hashes): its state stays, a route's local rate limit buckets among it.
			dst[name] = prev
			raw[name] = oldRaw[name]
			continue
		}
		v, got, err := compile(m)
		if err == nil && got != name {
			err = fmt.Errorf("%s %q: resource name %q differs from the name in the resource", kind, name, got)
		}
		if err != nil {
			*errs = append(*errs, err)
			if prev, ok := old[name]; ok {
				dst[name] = prev // the last good version stays (Envoy keeps a rejected resource's previous version)
				if r, ok := oldRaw[name]; ok {
					raw[name] = r
				}
			} else {
				delete(dst, name)
			}
			continue
		}
		dst[name] = v
		raw[name] = m
	}
}

func (s *Snapshot) clone() *Snapshot {
	n := &Snapshot{Listeners: maps.Clone(s.Listeners), Routes: maps.Clone(s.Routes), Clusters: maps.Clone(s.Clusters),
		Assignments: maps.Clone(s.Assignments), Secrets: maps.Clone(s.Secrets), Static: s.Static, Raw: map[string]map[string]proto.Message{}}
	for k, v := range s.Raw {
		n.Raw[k] = v
	}
	return n
}
