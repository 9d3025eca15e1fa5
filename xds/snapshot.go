package xds

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Snapshot is the resources of one node group at one version, for any type URL, Envoy's or
// mcpgate's own. It implements go-control-plane's cache.ResourceSnapshot, whose own Snapshot
// refuses type URLs it does not know. A Snapshot never changes once built.
type Snapshot struct {
	version string
	// resources is type URL -> name -> resource.
	resources map[string]map[string]types.ResourceWithTTL
	// plain is resources without the TTL wrapper, as GetResources returns it.
	plain map[string]map[string]types.Resource
	// hashes is type URL -> name -> SHA-256 of the deterministic encoding: the per-resource
	// version of Delta xDS, and what tells whether two snapshots differ.
	hashes map[string]map[string]string
}

var _ cachev3.ResourceSnapshot = (*Snapshot)(nil)

// NewSnapshot builds the snapshot of one node group: resources is type URL -> resources. A
// resource that is nil, has no name, is of another type than its key, repeats a name, or does not
// encode is left out, and the returned error names each one; the rest is in the snapshot.
//
// A resource that breaks the rules of its proto (checker.validate) would make Envoy reject the whole
// response, and so the other resources of its type with it: instead, the snapshot keeps prev's
// resource of that name (the last valid one served), or leaves it out when prev has none, and the
// error names it. Only resources that differ from prev's (by hash) are checked; prev may be nil.
func NewSnapshot(version string, resources map[string][]proto.Message, prev *Snapshot) (*Snapshot, error) {
	s := &Snapshot{
		version:   version,
		resources: make(map[string]map[string]types.ResourceWithTTL, len(resources)),
		plain:     make(map[string]map[string]types.Resource, len(resources)),
		hashes:    make(map[string]map[string]string, len(resources)),
	}
	var errs []error
	var c checker
	for _, typeURL := range slices.Sorted(maps.Keys(resources)) {
		msgs := resources[typeURL]
		withTTL := make(map[string]types.ResourceWithTTL, len(msgs))
		plain := make(map[string]types.Resource, len(msgs))
		hashes := make(map[string]string, len(msgs))
		var prevHashes map[string]string
		var prevPlain map[string]types.Resource
		if prev != nil {
			prevHashes, prevPlain = prev.hashes[typeURL], prev.plain[typeURL]
		}
		for i, m := range msgs {
			name, hash, err := describe(typeURL, m)
			if err == nil {
				if _, dup := plain[name]; dup {
					err = fmt.Errorf("name %q used twice", name)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", typeURL, i, err))
				continue
			}
			if old, ok := prevHashes[name]; !ok || old != hash {
				if err := c.validate(m); err != nil {
					last := prevPlain[name]
					if last == nil {
						errs = append(errs, fmt.Errorf("%s %q is invalid, left out: %w", kind(typeURL), name, err))
						continue
					}
					errs = append(errs, fmt.Errorf("%s %q is invalid, its last valid version is served: %w", kind(typeURL), name, err))
					m, hash = last, old
				}
			}
			withTTL[name] = types.ResourceWithTTL{Resource: m}
			plain[name] = m
			hashes[name] = hash
		}
		s.resources[typeURL] = withTTL
		s.plain[typeURL] = plain
		s.hashes[typeURL] = hashes
	}
	return s, errors.Join(errs...)
}

// describe returns the xDS name of m and the hash of its deterministic encoding, or why m cannot
// be served under typeURL.
func describe(typeURL string, m proto.Message) (name, hash string, err error) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return "", "", errors.New("nil resource")
	}
	if got := resourcev3.APITypePrefix + string(m.ProtoReflect().Descriptor().FullName()); got != typeURL {
		return "", "", fmt.Errorf("resource of type %s", got)
	}
	name = cachev3.GetResourceName(m)
	if name == "" {
		return "", "", errors.New("resource without a name")
	}
	b, err := cachev3.MarshalResource(m)
	if err != nil {
		return "", "", fmt.Errorf("%s: encoding: %w", name, err)
	}
	return name, cachev3.HashResource(b), nil
}

// kind is the short name of a type URL's message ("RouteConfiguration"), for messages.
func kind(typeURL string) string { return typeURL[strings.LastIndexByte(typeURL, '.')+1:] }

// Version is the snapshot's version: the decimal value of the server's counter when it was built.
func (s *Snapshot) Version() string { return s.version }

// TypeURLs returns the type URLs the snapshot holds, sorted.
func (s *Snapshot) TypeURLs() []string { return slices.Sorted(maps.Keys(s.plain)) }

// GetVersion returns the snapshot's version, the same for every type URL.
func (s *Snapshot) GetVersion(string) string { return s.version }

// GetResourcesAndTTL returns the resources of typeURL by name. The map must not be changed.
func (s *Snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	return s.resources[typeURL]
}

// GetResources returns the resources of typeURL by name. The map must not be changed.
func (s *Snapshot) GetResources(typeURL string) map[string]types.Resource {
	return s.plain[typeURL]
}

// ConstructVersionMap does nothing: NewSnapshot has already hashed every resource.
func (s *Snapshot) ConstructVersionMap() error { return nil }

// GetVersionMap returns the per-resource versions of typeURL by name (hashes, as go-control-plane
// computes them, so that they match the versions in Delta responses). The map must not be changed.
func (s *Snapshot) GetVersionMap(typeURL string) map[string]string {
	return s.hashes[typeURL]
}

// sameContent tells whether s and o hold the same resources (names and encodings), whatever
// their versions.
func (s *Snapshot) sameContent(o *Snapshot) bool {
	if o == nil {
		return false
	}
	nonEmpty := func(m map[string]map[string]string) map[string]map[string]string {
		out := make(map[string]map[string]string, len(m))
		for t, h := range m {
			if len(h) > 0 {
				out[t] = h
			}
		}
		return out
	}
	return maps.EqualFunc(nonEmpty(s.hashes), nonEmpty(o.hashes), maps.Equal)
}

// Inconsistencies lists the references that cannot be resolved inside the snapshot: a
// Listener's RDS route configuration or SDS Secret, a route's cluster or an EDS cluster's
// endpoints that the snapshot lacks, and route configurations or endpoints that nothing references (Envoy never
// asks for them by name). What Envoy's bootstrap holds or references is passed as static: its
// clusters, which need not be in the snapshot, and the route configuration of its static
// listener (contract.MuxUpstreamRoutes), which the snapshot's listeners do not reference.
func (s *Snapshot) Inconsistencies(static ...string) []string {
	refs := map[string]map[string]bool{
		resourcev3.RouteType:    {},
		resourcev3.EndpointType: {},
		resourcev3.ClusterType:  {},
	}
	for typ, set := range cachev3.GetResourceReferences(s.resources[resourcev3.ListenerType]) {
		maps.Copy(refs[typ], set)
	}
	for typ, set := range cachev3.GetResourceReferences(s.resources[resourcev3.ClusterType]) {
		maps.Copy(refs[typ], set)
	}
	for _, r := range s.plain[resourcev3.RouteType] {
		if rc, ok := r.(*routev3.RouteConfiguration); ok {
			routeClusters(rc, refs[resourcev3.ClusterType])
		}
	}
	refs[resourcev3.SecretType] = map[string]bool{}
	for _, r := range s.plain[resourcev3.ListenerType] {
		if l, ok := r.(*listenerv3.Listener); ok {
			listenerSecrets(l, refs[resourcev3.SecretType])
		}
	}
	var out []string
	missing := func(typ, what string, have map[string]types.Resource) {
		for _, name := range slices.Sorted(maps.Keys(refs[typ])) {
			if _, ok := have[name]; !ok && !slices.Contains(static, name) {
				out = append(out, fmt.Sprintf("%s %q is referenced but missing", what, name))
			}
		}
	}
	missing(resourcev3.RouteType, "RouteConfiguration", s.plain[resourcev3.RouteType])
	missing(resourcev3.ClusterType, "Cluster", s.plain[resourcev3.ClusterType])
	missing(resourcev3.EndpointType, "ClusterLoadAssignment", s.plain[resourcev3.EndpointType])
	missing(resourcev3.SecretType, "Secret", s.plain[resourcev3.SecretType])
	unreferenced := func(typ, what string) {
		for _, name := range slices.Sorted(maps.Keys(s.plain[typ])) {
			if !refs[typ][name] && !slices.Contains(static, name) {
				out = append(out, fmt.Sprintf("%s %q is not referenced", what, name))
			}
		}
	}
	unreferenced(resourcev3.RouteType, "RouteConfiguration")
	unreferenced(resourcev3.EndpointType, "ClusterLoadAssignment")
	sort.Strings(out)
	return out
}

// routeClusters adds the clusters that the routes of rc send to.
func routeClusters(rc *routev3.RouteConfiguration, into map[string]bool) {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			a := r.GetRoute()
			if c := a.GetCluster(); c != "" {
				into[c] = true
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				if wc.GetName() != "" {
					into[wc.GetName()] = true
				}
			}
		}
	}
}

// listenerSecrets adds the SDS Secrets that the TLS filter chains of l name, certificates and
// client CAs (a listener waits for them before it serves).
func listenerSecrets(l *listenerv3.Listener, into map[string]bool) {
	for _, fc := range l.GetFilterChains() {
		ts := fc.GetTransportSocket().GetTypedConfig()
		if ts == nil {
			continue
		}
		var ctx tlsv3.DownstreamTlsContext
		if ts.UnmarshalTo(&ctx) != nil {
			continue
		}
		for _, sds := range ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
			into[sds.GetName()] = true
		}
		if v := ctx.GetCommonTlsContext().GetValidationContextSdsSecretConfig(); v != nil {
			into[v.GetName()] = true // the client CA
		}
	}
}
