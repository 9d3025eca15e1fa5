// Package xds serves the xDS resources of every node group over ADS (State of the World and
// Delta), with go-control-plane's snapshot cache and gRPC server.
//
// A node group is normally a Gateway ("NS/NAME"): a node belongs to the group named by its
// node.cluster, or by its node.id when the cluster is empty. Group "*" holds what a client serving
// every gateway needs (ext_proc's policies). The server knows protobuf resources and type URLs,
// not Gateway API: any type URL can be served, including mcpgate's own policy type.
//
// By default the group is whatever node a client claims, over plaintext. ServerTLS requires
// clients to present a certificate of a trusted CA, and Server.BindIdentity binds each
// certificate to one node group: a client then gets its own group's configuration or nothing.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/mcpgate/mcpgate/contract"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
)

// Server holds the current snapshot of every node group and serves them over xDS. It is safe for
// concurrent use.
type Server struct {
	log   *slog.Logger
	cache *guardedCache
	xds   serverv3.Server
	cb    *callbacks
	m     *metrics

	mu      sync.RWMutex
	counter uint64
	groups  map[string]*Snapshot
	// removed are the groups Update emptied (a Gateway removed), each with when, whose empty
	// snapshot the cache still holds for their clients; forget drops each once none is
	// connected or watching, removedGrace after the removal at the earliest.
	removed map[string]time.Time
	// now is the clock (time.Now; tests set another).
	now func() time.Time
}

// removedGrace is how long a removed Gateway's empty snapshot is kept at least: a client of it
// between two streams (reconnecting) when the Gateway was removed gets the removal when it is
// back, instead of keeping the listeners it had.
const removedGrace = 5 * time.Minute

// New returns a server with no node group yet. Clients that connect before their group exists
// wait for it. A nil logger discards the logs.
//
// Responses on one ADS stream go out in go-control-plane's order: clusters, endpoints,
// listeners, routes, secrets, then any other type (policies). A listener whose SDS Secret comes
// after it warms until the Secret arrives (Envoy's listener waits for its SDS init target), so
// a new HTTPS listener serves once its certificate is in, and never without one. A SotW ADS stream buffers one pending
// response per type for up to 10 types; a stream asking for more types is refused, since it
// could hold up every push.
func New(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "xds")
	lg := cacheLogger{logger}
	c := &guardedCache{SnapshotCache: cachev3.NewSnapshotCache(true, groupHash{}, lg)}
	m := newMetrics()
	cb := newCallbacks(logger, m)
	s := &Server{
		log:     logger,
		cache:   c,
		xds:     serverv3.NewServer(context.Background(), c, cb, sotw.WithOrderedADS(), sotw.WithLogger(lg)),
		cb:      cb,
		m:       m,
		groups:  map[string]*Snapshot{},
		removed: map[string]time.Time{},
		now:     time.Now,
	}
	cb.onClosed = s.forget
	return s
}

// guardedCache is the snapshot cache as the xDS server uses it: watches are made under mu
// (read), so that forget (write) sees none being made while it drops a node group's state.
type guardedCache struct {
	cachev3.SnapshotCache
	mu sync.RWMutex
}

// CreateWatch implements cachev3.ConfigWatcher.
func (c *guardedCache) CreateWatch(r *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.SnapshotCache.CreateWatch(r, sub, ch)
}

// CreateDeltaWatch implements cachev3.ConfigWatcher.
func (c *guardedCache) CreateDeltaWatch(r *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.SnapshotCache.CreateDeltaWatch(r, sub, ch)
}

// forget drops the snapshot cache's state of the node groups that are not served: of a group
// never served once no client watches it, of a removed Gateway's group once no client of it is
// connected or watching, removedGrace after its removal at the earliest. go-control-plane keeps that state (the node a client sent, its watches, the
// snapshot) for every group a client ever named or a snapshot was set for, until it is cleared:
// clients of groups that are not served (a typo in --gateway, an Envoy without
// --service-cluster grouped by its pod's node id, a client making groups up), and the empty
// snapshots of removed Gateways, would grow it for ever. A removed Gateway's empty snapshot is
// kept while a client of it is connected, between its watches too (it removes what the client
// had, whenever the client asks again); a client connecting after it is forgotten waits, as for
// any group not served. It runs when a stream ends, after its watches are cancelled, and after an update.
func (s *Server) forget() {
	s.mu.Lock() // no snapshot is set meanwhile
	defer s.mu.Unlock()
	s.forgetLocked()
}

// forgetLocked is forget with s.mu held.
func (s *Server) forgetLocked() {
	s.cache.mu.Lock() // no watch is made meanwhile
	defer s.cache.mu.Unlock()
	watched := func(g string) bool {
		info := s.cache.GetStatusInfo(g) // nil for a group no client named
		return info != nil && (info.GetNumWatches() > 0 || info.GetNumDeltaWatches() > 0)
	}
	for _, g := range s.cache.GetStatusKeys() {
		if _, removed := s.removed[g]; !removed && s.groups[g] == nil && !watched(g) {
			s.cache.ClearSnapshot(g)
		}
	}
	connected := s.cb.connectedGroups()
	for g, at := range s.removed {
		if !connected[g] && !watched(g) && s.now().Sub(at) >= removedGrace {
			s.cache.ClearSnapshot(g)
			delete(s.removed, g)
		}
	}
}

// GroupOf returns the node group of a node: its cluster, or its id when the cluster is empty.
func GroupOf(n *corev3.Node) string {
	if c := n.GetCluster(); c != "" {
		return c
	}
	return n.GetId()
}

// groupHash maps nodes to their group for the snapshot cache.
type groupHash struct{}

func (groupHash) ID(n *corev3.Node) string { return GroupOf(n) }

// Update makes groups (node group -> type URL -> resources) the served state. Groups whose
// resources differ from what is served get a snapshot at the next version of one counter and are
// pushed; unchanged groups keep their version and are not pushed; groups absent from groups are
// emptied (their clients remove what they had) and dropped. "*" is pushed first, so that ext_proc
// can learn a policy before Envoy routes to it. A resource that cannot be served (no name, a
// repeated name, a type other than its key) is left out and named in the returned error; the rest
// is served. A snapshot whose references do not resolve is logged and served all the same.
func (s *Server) Update(groups map[string]map[string][]proto.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := strconv.FormatUint(s.counter+1, 10)
	var errs []error
	changed := map[string]*Snapshot{}
	for name, res := range groups {
		snap, err := NewSnapshot(next, res, s.groups[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("node group %s: %w", name, err))
		}
		if !snap.sameContent(s.groups[name]) {
			changed[name] = snap
		}
	}
	var removed []string
	for name := range s.groups {
		if _, ok := groups[name]; !ok {
			removed = append(removed, name)
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		return errors.Join(errs...)
	}
	s.counter++
	empty, _ := NewSnapshot(next, nil, nil)
	for _, name := range removed {
		changed[name] = empty
	}
	// Sorted: "*" comes before every Kubernetes name.
	names := slices.Sorted(maps.Keys(changed))
	for _, name := range names {
		snap := changed[name]
		if problems := snap.Inconsistencies(contract.XDSCluster, contract.ExtProcCluster, contract.MuxCluster, contract.MuxUpstreamRoutes); len(problems) > 0 {
			s.log.Warn("inconsistent snapshot served", "group", name, "version", next, "problems", problems)
		}
		if err := s.cache.SetSnapshot(context.Background(), name, snap); err != nil {
			errs = append(errs, fmt.Errorf("node group %s: setting snapshot: %w", name, err))
			continue
		}
		if _, ok := groups[name]; ok {
			s.groups[name] = snap
			delete(s.removed, name)
		} else {
			delete(s.groups, name)
			s.removed[name] = s.now()
		}
	}
	s.forgetLocked() // the removed groups no client watches
	s.cb.setServed(slices.Collect(maps.Keys(s.groups)))
	s.m.version.Set(float64(s.counter))
	s.m.groups.Set(float64(len(s.groups)))
	s.log.Info("pushed snapshot", "version", next, "groups", names, "removed", removed)
	return errors.Join(errs...)
}

// Rejections lists what the connected clients rejected (NACKed) and have not accepted since:
// "node NODE: TYPE: message" per stream and type, sorted; none when all is accepted.
func (s *Server) Rejections() []string { return s.cb.rejections() }

// Version returns the version of the last push ("0" before the first).
func (s *Server) Version() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return strconv.FormatUint(s.counter, 10)
}

// Snapshot returns the snapshot served to group, if the group exists.
func (s *Server) Snapshot(group string) (*Snapshot, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap, ok := s.groups[group]
	return snap, ok
}

// Groups returns the names of the node groups served, sorted.
func (s *Server) Groups() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.groups))
}

// Register adds to g the aggregated discovery service (SotW and Delta), the per-type discovery
// services of listeners, routes, clusters and endpoints, and gRPC server reflection (so that
// `grpcurl -plaintext ADDR list` works). Do not register reflection on g again.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
	reflection.Register(g)
}

// MaxRequestBytes is the largest request the xDS server accepts. gRPC's default, 4 MiB, is
// reached by a reconnecting Envoy that holds some 28,000 resources of one type: its first Delta
// request names each with its version (about 150 bytes).
const MaxRequestBytes = 64 << 20

// GRPCServerOptions are the options of a gRPC server for xDS: keepalives that detect vanished
// clients and accept the HTTP/2 pings that Envoy's bootstrap asks for, and requests up to
// MaxRequestBytes. (Responses have no limit but the client's.)
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}
