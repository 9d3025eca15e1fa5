package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// connectError marks a failure to connect (TCP or TLS handshake): Envoy's "connection failure"
// reset reason, 503 with response flag UF.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connection failure: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// upstreams keeps, per cluster, the HTTP transports (one per endpoint, so connections are pooled
// per host as Envoy does), the round-robin position and the DNS answers of STRICT_DNS clusters.
type upstreams struct {
	mu       sync.Mutex
	clusters map[string]*upCluster
	resolver *net.Resolver
	// snap is the active configuration: the SDS Secrets of client certificates, as they are
	// at each handshake
	snap func() *xdsconf.Snapshot
}

type upCluster struct {
	ups        *upstreams
	cfg        *xdsconf.Cluster
	rr         atomic.Uint64
	mu         sync.Mutex
	dns        map[string]dnsAnswer
	transports map[string]*http.Transport

	// The circuit breakers' resources (admit); a new cluster version starts with its own, as a
	// new ClusterInfo has a new ResourceManager in Envoy.
	cbMu    sync.Mutex
	active  uint32        // requests attached to a connection
	pending uint32        // requests waiting for a connection
	freed   chan struct{} // closed (and replaced) when a request leaves: pending ones look again
}

// errOverflow is a circuit breaker's refusal: Envoy's connection pool fails the request with
// reason Overflow, which the router answers 503 UO (upstream_reset_before_response_started{overflow}).
type errOverflow struct{ pending bool }

func (e *errOverflow) Error() string {
	if e.pending {
		return "max pending streams overflow"
	}
	return "max streams overflow"
}

// admit attaches a request to the cluster as Envoy's connection pool does with the circuit
// breakers of the cluster (conn_pool_base.cc: newStreamImpl, tryCreateNewConnection,
// attachStreamToClient). Over HTTP/1.1 a request holds its connection until it ends, so the
// connections in use are the requests attached: while they number max_connections, a new request
// waits for one to end (Envoy queues it as pending and creates no connection,
// upstream_cx_overflow), unless max_pending_requests are waiting already (overflow, which
// Envoy checks before queueing); a request that gets a connection is refused when
// max_requests are attached (overflow). Over HTTP/2 every request attaches to the multiplexed
// connection: only max_requests applies. The double counts only connections in use: Envoy also
// counts idle ones (and keeps a pool per worker), which the double's Go transports do not show.
// release ends the request; err is an *errOverflow, or ctx's error when it ended while waiting.
func (uc *upCluster) admit(ctx context.Context) (release func(), err error) {
	lim := uc.cfg.Limits
	uc.cbMu.Lock()
	if !uc.cfg.HTTP2 && uc.active >= lim.MaxConnections {
		if uc.pending >= lim.MaxPendingRequests {
			uc.cbMu.Unlock()
			return nil, &errOverflow{pending: true}
		}
		uc.pending++
		for uc.active >= lim.MaxConnections {
			if uc.freed == nil {
				uc.freed = make(chan struct{})
			}
			freed := uc.freed
			uc.cbMu.Unlock()
			select {
			case <-freed:
			case <-ctx.Done():
				uc.cbMu.Lock()
				uc.pending--
				uc.cbMu.Unlock()
				return nil, ctx.Err()
			}
			uc.cbMu.Lock()
		}
		uc.pending--
	}
	if uc.active >= lim.MaxRequests {
		uc.cbMu.Unlock()
		return nil, &errOverflow{}
	}
	uc.active++
	uc.cbMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			uc.cbMu.Lock()
			uc.active--
			if uc.freed != nil {
				close(uc.freed)
				uc.freed = nil
			}
			uc.cbMu.Unlock()
		})
	}, nil
}

type dnsAnswer struct {
	ips []net.IP
	at  time.Time
}

func newUpstreams(snap func() *xdsconf.Snapshot) *upstreams {
	return &upstreams{clusters: map[string]*upCluster{}, resolver: net.DefaultResolver, snap: snap}
}

// clientTLS is the TLS configuration of one new connection to cluster c (c.TLS set). With an
// SDS client certificate (c.ClientSecret) it presents the Secret as the active snapshot holds
// it now, as Envoy's ClientSslSocketFactory rebuilds its context on each Secret update for the
// connections that follow (open ones keep theirs); when the Secret is not there, the connection
// fails before its handshake, as Envoy's NotReadySslSocket fails it
// (client_ssl_socket_factory.upstream_context_secrets_not_ready): a connection failure, 503 UF.
// Envoy warms a new cluster until its Secret arrives, up to the initial fetch timeout, keeping
// the version it replaces meanwhile; the double uses the new version at once (README, Known
// differences).
func (u *upstreams) clientTLS(c *xdsconf.Cluster) (*tls.Config, error) {
	cfg := c.TLS.Clone()
	if c.ClientSecret == "" {
		return cfg, nil
	}
	sec := u.snap().Secrets[c.ClientSecret]
	if sec == nil {
		return nil, fmt.Errorf("TLS error: Secret %q is not supplied by SDS", c.ClientSecret)
	}
	cert := sec.Cert
	// Envoy (BoringSSL) presents its certificate whenever the upstream asks for one, whatever
	// CAs the request names; Go's default would send none when they do not match.
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg, nil
}

// get returns the state of a cluster; a new cluster version starts with fresh transports (the old
// ones finish their requests and are dropped when idle).
func (u *upstreams) get(c *xdsconf.Cluster) *upCluster {
	u.mu.Lock()
	defer u.mu.Unlock()
	uc, ok := u.clusters[c.Name]
	if ok && uc.cfg == c {
		return uc
	}
	if ok {
		uc.closeIdle()
	}
	uc = &upCluster{ups: u, cfg: c, dns: map[string]dnsAnswer{}, transports: map[string]*http.Transport{}}
	u.clusters[c.Name] = uc
	return uc
}

func (u *upstreams) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, uc := range u.clusters {
		uc.closeIdle()
	}
}

func (uc *upCluster) closeIdle() {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	for _, t := range uc.transports {
		t.CloseIdleConnections()
	}
}

// endpoint is a resolved endpoint with its host's hostname (auto_host_rewrite).
type endpoint struct {
	xdsconf.Endpoint
	hostname string
}

// endpoints lists the cluster's endpoints: STATIC as configured, STRICT_DNS resolved (one endpoint
// per address, refreshed every dns_refresh_rate), EDS from the ClusterLoadAssignment.
func (u *upstreams) endpoints(ctx context.Context, uc *upCluster, snap *xdsconf.Snapshot) []endpoint {
	var eps []xdsconf.Endpoint
	switch uc.cfg.Type {
	case xdsconf.EDS:
		if la := snap.Assignments[uc.cfg.EDSName]; la != nil {
			eps = la.Endpoints
		}
	default:
		eps = uc.cfg.Endpoints
	}
	var out []endpoint
	for _, e := range eps {
		// The host's hostname (auto_host_rewrite) is endpoint.hostname, or for STRICT_DNS the DNS
		// name when it is unset (Envoy's DnsClusterImpl::ResolveTarget); a STATIC or EDS endpoint
		// without it has none.
		hostname := e.Hostname
		if uc.cfg.Type != xdsconf.StrictDNS || e.Network != "tcp" || net.ParseIP(e.Host) != nil {
			out = append(out, endpoint{Endpoint: e, hostname: hostname})
			continue
		}
		if hostname == "" {
			hostname = e.Host
		}
		for _, ip := range u.resolve(ctx, uc, e.Host) {
			r := e
			r.Host = ip.String()
			out = append(out, endpoint{Endpoint: r, hostname: hostname})
		}
	}
	return out
}

func (u *upstreams) resolve(ctx context.Context, uc *upCluster, host string) []net.IP {
	uc.mu.Lock()
	a, ok := uc.dns[host]
	uc.mu.Unlock()
	if ok && time.Since(a.at) < uc.cfg.DNSRefreshRate {
		return a.ips
	}
	addrs, err := u.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return a.ips // Envoy keeps the last answer when a refresh fails
	}
	var v4, v6 []net.IP
	for _, ad := range addrs {
		if ad.IP.To4() != nil {
			v4 = append(v4, ad.IP)
		} else {
			v6 = append(v6, ad.IP)
		}
	}
	// dns_lookup_family: AUTO prefers IPv6 and falls back to IPv4; V4_PREFERRED the reverse.
	var ips []net.IP
	switch uc.cfg.DNSFamily {
	case clusterv3.Cluster_V4_ONLY:
		ips = v4
	case clusterv3.Cluster_V6_ONLY:
		ips = v6
	case clusterv3.Cluster_V4_PREFERRED:
		ips = v4
		if len(ips) == 0 {
			ips = v6
		}
	case clusterv3.Cluster_ALL:
		ips = append(v4, v6...)
	default:
		ips = v6
		if len(ips) == 0 {
			ips = v4
		}
	}
	uc.mu.Lock()
	uc.dns[host] = dnsAnswer{ips: ips, at: time.Now()}
	uc.mu.Unlock()
	return ips
}

// pick chooses an endpoint among the healthy ones of the best priority: for RING_HASH a
// consistent hash of hashKey; else round robin, Envoy's default lb_policy (RoundRobinLoadBalancer:
// with equal weights the hosts in turn), which never reads the request's hash even when the route
// has a hash_policy. A RING_HASH request without a hash goes round robin too, where Envoy takes a
// random point of the ring (README: Known differences).
func (uc *upCluster) pick(eps []endpoint, hashKey *uint64) (endpoint, bool) {
	var healthy []endpoint
	best := ^uint32(0)
	for _, e := range eps {
		if e.Healthy && e.Priority < best {
			best = e.Priority
		}
	}
	for _, e := range eps {
		if e.Healthy && e.Priority == best {
			healthy = append(healthy, e)
		}
	}
	if len(healthy) == 0 {
		return endpoint{}, false
	}
	if uc.cfg.LB == xdsconf.RingHash && hashKey != nil {
		return ringPick(healthy, *hashKey, uc.cfg.MinRingSize, uc.cfg.MaxRingSize), true
	}
	n := uc.rr.Add(1) - 1
	return healthy[n%uint64(len(healthy))], true
}

// ringPick picks from a ring built as Envoy's RingHashLoadBalancer builds it
// (ring_hash_lb.cc): each host gets scale * its normalized weight entries, scale =
// min(ceil(min_weight * minimum_ring_size) / min_weight, maximum_ring_size), the entry hashes
// being xxHash64 of "ADDRESS_I"; the ring is sorted and the request hash takes the first entry at
// or above it, wrapping to the first (ketama's lookup).
func ringPick(eps []endpoint, key uint64, minSize, maxSize uint64) endpoint {
	var total float64
	for _, e := range eps {
		total += float64(e.Weight)
	}
	if total == 0 {
		return eps[0]
	}
	minW := 1.0
	for _, e := range eps {
		minW = math.Min(minW, float64(e.Weight)/total)
	}
	scale := math.Min(math.Ceil(minW*float64(minSize))/minW, float64(maxSize))
	type entry struct {
		h uint64
		i int
	}
	ring := make([]entry, 0, int(math.Ceil(scale)))
	current, target := 0.0, 0.0
	for i, e := range eps {
		target += scale * float64(e.Weight) / total
		for j := 0; current < target; j++ {
			ring = append(ring, entry{xxhash.Sum64String(e.Addr() + "_" + strconv.Itoa(j)), i})
			current++
		}
	}
	sort.Slice(ring, func(a, b int) bool { return ring[a].h < ring[b].h })
	k := sort.Search(len(ring), func(i int) bool { return ring[i].h >= key })
	if k == len(ring) {
		k = 0
	}
	return eps[ring[k].i]
}

// hash64 is Envoy's HashUtil::xxHash64 (seed 0), the hash of a hash_policy value.
func hash64(s string) uint64 { return xxhash.Sum64String(s) }

// transport returns the pooled HTTP transport to one endpoint.
func (uc *upCluster) transport(e endpoint) *http.Transport {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if t, ok := uc.transports[e.Addr()]; ok {
		return t
	}
	c := uc.cfg
	dial := func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: c.ConnectTimeout}
		conn, err := d.DialContext(ctx, e.Network, e.Addr())
		if err != nil {
			return nil, &connectError{err}
		}
		return conn, nil
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		// Envoy passes bodies as they are: no transparent gzip.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     c.IdleTimeout, // 0 (Envoy: never) is none for Go too
	}
	if c.TLS != nil {
		t.TLSClientConfig = c.TLS.Clone()
		t.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			cfg, err := uc.ups.clientTLS(c)
			if err != nil {
				return nil, &connectError{err}
			}
			conn, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(conn, cfg)
			hctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				conn.Close()
				return nil, &connectError{fmt.Errorf("TLS handshake: %w", err)}
			}
			return tc, nil
		}
	}
	if c.HTTP2 {
		var p http.Protocols
		if c.TLS != nil {
			p.SetHTTP2(true)
			t.ForceAttemptHTTP2 = true
		} else {
			p.SetUnencryptedHTTP2(true)
		}
		t.Protocols = &p
	}
	uc.transports[e.Addr()] = t
	return t
}

// emptyBody is the body of a request without one to an HTTP/1.1 cluster. Go's Transport sends a
// request again, on another connection, when the reused connection it went out on fails: a
// replayable one (GET, HEAD, OPTIONS with http.NoBody) when the server closed the connection
// before answering (transportReadFromServerError, errServerClosedIdle), any bodiless one when
// nothing of it was written (nothingWrittenError). Envoy's router retries nothing without a retry
// policy: it answers 503 UC, "connection termination", as when a server closes an idle keep-alive
// connection just as Envoy reuses it. A body that is not http.NoBody makes the request neither
// replayable nor of zero outgoing length, so Go returns the error instead. For the methods that
// usually lack a body, Go finds it empty (transferWriter.probeRequestBody) and sends none, as
// with http.NoBody; other methods keep http.NoBody (an empty body of theirs would go chunked), and
// with it Go's retry of a request nothing of which was written.
func emptyBody(method string) io.ReadCloser {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions:
		return io.NopCloser(strings.NewReader(""))
	}
	return http.NoBody
}

func isConnectError(err error) bool {
	var ce *connectError
	return errors.As(err, &ce)
}
