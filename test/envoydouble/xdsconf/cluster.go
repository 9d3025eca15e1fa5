package xdsconf

//lint:file-ignore SA1019 Envoy still accepts deprecated fields (dns_refresh_rate); the double reads them as Envoy does

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DiscoveryType is how a cluster finds its endpoints.
type DiscoveryType int

// The discovery types the double implements (Cluster.type).
const (
	Static DiscoveryType = iota
	StrictDNS
	EDS
)

// LBPolicy is the cluster's load balancer (Cluster.lb_policy).
type LBPolicy int

// The load balancers the double implements.
const (
	RoundRobin LBPolicy = iota
	RingHash
)

// Cluster is an upstream cluster.
type Cluster struct {
	// Name is the cluster's name, what routes and %UPSTREAM_CLUSTER% name it by.
	Name string
	// StatName names its statistics (cluster.<StatName>.*): alt_stat_name, else Name.
	StatName string
	// Type is how the cluster finds its endpoints (type: STATIC, STRICT_DNS or EDS).
	Type DiscoveryType
	// EDSName is the ClusterLoadAssignment name: eds_cluster_config.service_name, else the
	// cluster name (Envoy's rule).
	EDSName string
	// Endpoints of a STATIC or STRICT_DNS cluster (from load_assignment).
	Endpoints []Endpoint
	// ConnectTimeout is connect_timeout; Envoy's default is 5 s.
	ConnectTimeout time.Duration
	// DNSRefreshRate is dns_refresh_rate; Envoy's default is 5 s.
	DNSRefreshRate time.Duration
	// LB is lb_policy: ROUND_ROBIN (the default) or RING_HASH.
	LB LBPolicy
	// MinRingSize and MaxRingSize are ring_hash_lb_config's minimum_ring_size (Envoy's default
	// 1024) and maximum_ring_size (8M).
	MinRingSize, MaxRingSize uint64
	// HTTP2 is set by typed_extension_protocol_options' explicit http2_protocol_options.
	HTTP2 bool
	// IdleTimeout is common_http_protocol_options.idle_timeout: how long an upstream connection
	// without requests is kept (Envoy's default one hour; 0: for ever).
	IdleTimeout time.Duration
	// TLS is the upstream TLS client configuration from transport_socket, nil for plaintext.
	TLS *tls.Config
	// ClientSecret names the SDS Secret of the client certificate
	// (tls_certificate_sds_secret_configs), "" for none or an inline one (in TLS): the
	// certificate is the Secret as the active snapshot holds it at each handshake.
	ClientSecret string
	// DNSFamily is dns_lookup_family: which resolved addresses a STRICT_DNS cluster uses.
	DNSFamily clusterv3.Cluster_DnsLookupFamily
	// Metadata is metadata.filter_metadata (by filter namespace), what the access log's
	// %METADATA(CLUSTER:...)% reads.
	Metadata map[string]*structpb.Struct
	// Limits are the circuit breakers of the DEFAULT routing priority (the only one routes use).
	Limits Limits
}

// Limits are a cluster's circuit_breakers thresholds that change answers. Envoy's default for
// each is 1024 (ClusterInfoImpl::ResourceManagers::load).
type Limits struct {
	// MaxConnections is max_connections: connections to the cluster's hosts.
	MaxConnections uint32
	// MaxPendingRequests is max_pending_requests: requests waiting for a connection.
	MaxPendingRequests uint32
	// MaxRequests is max_requests: requests in flight on the cluster's connections.
	MaxRequests uint32
}

// defaultLimit is Envoy's value of a circuit breaker threshold left unset.
const defaultLimit = 1024

// Endpoint is one upstream address. Network is "tcp" (Host:Port) or "unix" (Path).
type Endpoint struct {
	// Network is "tcp" (socket_address) or "unix" (pipe).
	Network string
	Host    string // IP or DNS name for tcp
	// Port is socket_address.port_value, for tcp.
	Port uint32
	Path string // unix socket path
	// Healthy follows Envoy's health_status: UNKNOWN and HEALTHY (and DEGRADED, as a fallback
	// Envoy uses when nothing else is left) receive traffic.
	Healthy bool
	// Priority is the priority of the endpoint's locality (0, the default, is the highest).
	Priority uint32
	// Weight is lb_endpoints' load_balancing_weight (default 1).
	Weight uint32
	// Hostname is endpoint.hostname: the host's hostname (auto_host_rewrite) for STATIC and EDS
	// endpoints; a STRICT_DNS endpoint without it takes its DNS name.
	Hostname string
}

// Addr is the dial address, also %UPSTREAM_HOST%.
func (e Endpoint) Addr() string {
	if e.Network == "unix" {
		return e.Path
	}
	return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
}

// LoadAssignment is a ClusterLoadAssignment received over EDS.
type LoadAssignment struct {
	// Name is cluster_name: the EDSName of the clusters it serves.
	Name string
	// Endpoints are the assignment's endpoints, over all localities.
	Endpoints []Endpoint
}

const (
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	tlsTransportSocket     = "envoy.transport_sockets.tls"
)

// CompileCluster checks and compiles a Cluster.
func CompileCluster(c *clusterv3.Cluster) (*Cluster, error) {
	path := fmt.Sprintf("cluster %q", c.GetName())
	if err := validate(c, path); err != nil {
		return nil, err
	}
	// Ignored on purpose: names and stats only; per-connection buffer limits do not change
	// answers at test volumes; respect_dns_ttl (refresh at dns_refresh_rate).
	if err := checkFields(c, path, "name", "alt_stat_name", "type", "eds_cluster_config",
		"connect_timeout", "lb_policy", "load_assignment", "typed_extension_protocol_options",
		"dns_refresh_rate", "dns_lookup_family", "respect_dns_ttl", "transport_socket",
		"circuit_breakers", "per_connection_buffer_limit_bytes", "ring_hash_lb_config",
		"round_robin_lb_config", "common_lb_config", "metadata"); err != nil {
		return nil, err
	}
	out := &Cluster{Name: c.GetName(), StatName: cmp.Or(c.GetAltStatName(), c.GetName()), EDSName: c.GetName(), ConnectTimeout: 5 * time.Second, DNSRefreshRate: 5 * time.Second,
		IdleTimeout: time.Hour, DNSFamily: c.GetDnsLookupFamily(), Metadata: c.GetMetadata().GetFilterMetadata()}
	if c.GetConnectTimeout() != nil {
		out.ConnectTimeout = c.GetConnectTimeout().AsDuration()
	}
	if c.GetDnsRefreshRate() != nil {
		out.DNSRefreshRate = c.GetDnsRefreshRate().AsDuration()
	}
	limits, err := compileLimits(c.GetCircuitBreakers(), path+".circuit_breakers")
	if err != nil {
		return nil, err
	}
	out.Limits = limits
	if cl := c.GetCommonLbConfig(); cl != nil {
		if err := checkFields(cl, path+".common_lb_config", "healthy_panic_threshold"); err != nil {
			return nil, err
		}
	}
	out.MinRingSize, out.MaxRingSize = 1024, 8*1024*1024
	if rh := c.GetRingHashLbConfig(); rh != nil {
		// hash_function XX_HASH (the default) only: checkFields refuses MURMUR_HASH_2.
		if err := checkFields(rh, path+".ring_hash_lb_config", "minimum_ring_size", "maximum_ring_size"); err != nil {
			return nil, err
		}
		if v := rh.GetMinimumRingSize(); v != nil {
			out.MinRingSize = v.GetValue()
		}
		if v := rh.GetMaximumRingSize(); v != nil {
			out.MaxRingSize = v.GetValue()
		}
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		out.Type = Static
	case clusterv3.Cluster_STRICT_DNS:
		out.Type = StrictDNS
	case clusterv3.Cluster_EDS:
		out.Type = EDS
		eds := c.GetEdsClusterConfig()
		if err := checkFields(eds, path+".eds_cluster_config", "eds_config", "service_name"); err != nil {
			return nil, err
		}
		if sc := eds.GetEdsConfig(); sc != nil && sc.GetAds() == nil {
			return nil, fmt.Errorf("%s.eds_cluster_config.eds_config: only ads is implemented by envoydouble", path)
		}
		if eds.GetServiceName() != "" {
			out.EDSName = eds.GetServiceName()
		}
	default:
		return nil, fmt.Errorf("%s.type: %s not implemented by envoydouble (STATIC, STRICT_DNS, EDS)", path, c.GetType())
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.LB = RoundRobin
	case clusterv3.Cluster_RING_HASH:
		out.LB = RingHash
	default:
		return nil, fmt.Errorf("%s.lb_policy: %s not implemented by envoydouble (ROUND_ROBIN, RING_HASH)", path, c.GetLbPolicy())
	}
	if la := c.GetLoadAssignment(); la != nil {
		if out.Type == EDS {
			return nil, fmt.Errorf("%s.load_assignment: set on an EDS cluster", path)
		}
		eps, err := compileEndpoints(la, path+".load_assignment")
		if err != nil {
			return nil, err
		}
		out.Endpoints = eps
	}
	for k, v := range c.GetTypedExtensionProtocolOptions() {
		p := fmt.Sprintf("%s.typed_extension_protocol_options[%q]", path, k)
		if k != httpProtocolOptionsKey {
			return nil, fmt.Errorf("%s: not implemented by envoydouble", p)
		}
		var opts httpv3.HttpProtocolOptions
		if err := unpack(v, &opts, p); err != nil {
			return nil, err
		}
		if err := checkFields(&opts, p, "explicit_http_config", "common_http_protocol_options"); err != nil {
			return nil, err
		}
		if ex := opts.GetExplicitHttpConfig(); ex != nil {
			out.HTTP2 = ex.GetHttp2ProtocolOptions() != nil
			// HTTP/1.1 options (header case, absolute URLs, ...) change what upstreams get.
			if err := checkFields(ex.GetHttpProtocolOptions(), p+".explicit_http_config.http_protocol_options"); err != nil {
				return nil, err
			}
		} else if opts.GetUpstreamProtocolOptions() != nil {
			return nil, fmt.Errorf("%s: only explicit_http_config is implemented by envoydouble", p)
		}
		if co := opts.GetCommonHttpProtocolOptions(); co != nil {
			if err := checkFields(co, p+".common_http_protocol_options", "idle_timeout"); err != nil {
				return nil, err
			}
			if d := co.GetIdleTimeout(); d != nil {
				out.IdleTimeout = d.AsDuration()
			}
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		cfg, secret, err := compileUpstreamTLS(ts, path+".transport_socket")
		if err != nil {
			return nil, err
		}
		out.TLS, out.ClientSecret = cfg, secret
	}
	return out, nil
}

// compileLimits reads the thresholds of the DEFAULT priority, the first entry naming it as Envoy
// takes it, with Envoy's default (1024) for what is unset. HIGH thresholds are accepted and never
// apply (the double refuses route priorities). max_retries is accepted and has no effect: the
// double refuses retry policies, so no request is retried. Retry budgets and per-host thresholds
// are refused.
func compileLimits(cb *clusterv3.CircuitBreakers, path string) (Limits, error) {
	out := Limits{MaxConnections: defaultLimit, MaxPendingRequests: defaultLimit, MaxRequests: defaultLimit}
	if err := checkFields(cb, path, "thresholds"); err != nil {
		return out, err
	}
	found := false
	for i, th := range cb.GetThresholds() {
		tp := join(path, idx("thresholds", i))
		if err := checkFields(th, tp, "priority", "max_connections", "max_pending_requests", "max_requests",
			"max_retries", "track_remaining"); err != nil {
			return out, err
		}
		if found || th.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		found = true
		for _, f := range []struct {
			v   *wrapperspb.UInt32Value
			dst *uint32
		}{{th.GetMaxConnections(), &out.MaxConnections}, {th.GetMaxPendingRequests(), &out.MaxPendingRequests}, {th.GetMaxRequests(), &out.MaxRequests}} {
			if f.v != nil {
				*f.dst = f.v.GetValue()
			}
		}
	}
	return out, nil
}

// CompileLoadAssignment checks and compiles a ClusterLoadAssignment received over EDS.
func CompileLoadAssignment(la *endpointv3.ClusterLoadAssignment) (*LoadAssignment, error) {
	path := fmt.Sprintf("cluster_load_assignment %q", la.GetClusterName())
	if err := validate(la, path); err != nil {
		return nil, err
	}
	eps, err := compileEndpoints(la, path)
	if err != nil {
		return nil, err
	}
	return &LoadAssignment{Name: la.GetClusterName(), Endpoints: eps}, nil
}

func compileEndpoints(la *endpointv3.ClusterLoadAssignment, path string) ([]Endpoint, error) {
	// policy (overprovisioning factor, drop overloads) does not change which endpoint answers here.
	if err := checkFields(la, path, "cluster_name", "endpoints", "policy"); err != nil {
		return nil, err
	}
	var out []Endpoint
	for i, loc := range la.GetEndpoints() {
		lp := join(path, idx("endpoints", i))
		if err := checkFields(loc, lp, "locality", "lb_endpoints", "load_balancing_weight", "priority"); err != nil {
			return nil, err
		}
		for j, lbe := range loc.GetLbEndpoints() {
			ep := join(lp, idx("lb_endpoints", j))
			if err := checkFields(lbe, ep, "endpoint", "health_status", "load_balancing_weight", "metadata"); err != nil {
				return nil, err
			}
			e := lbe.GetEndpoint()
			if err := checkFields(e, ep+".endpoint", "address", "hostname"); err != nil {
				return nil, err
			}
			addr, err := compileAddress(e.GetAddress(), ep+".endpoint.address")
			if err != nil {
				return nil, err
			}
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY, corev3.HealthStatus_DEGRADED:
				addr.Healthy = true
			}
			addr.Priority = loc.GetPriority()
			addr.Hostname = e.GetHostname()
			addr.Weight = 1
			if w := lbe.GetLoadBalancingWeight(); w != nil {
				addr.Weight = w.GetValue()
			}
			out = append(out, addr)
		}
	}
	return out, nil
}

// compileAddress reads a socket_address (TCP) or a pipe (Unix socket).
func compileAddress(a *corev3.Address, path string) (Endpoint, error) {
	if p := a.GetPipe(); p != nil {
		if err := checkFields(p, path+".pipe", "path", "mode"); err != nil {
			return Endpoint{}, err
		}
		return Endpoint{Network: "unix", Path: p.GetPath()}, nil
	}
	sa := a.GetSocketAddress()
	if sa == nil {
		return Endpoint{}, fmt.Errorf("%s: only socket_address and pipe are implemented by envoydouble", path)
	}
	if err := checkFields(sa, path+".socket_address", "address", "port_value", "protocol", "ipv4_compat"); err != nil {
		return Endpoint{}, err
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return Endpoint{}, fmt.Errorf("%s.socket_address.protocol: only TCP is implemented by envoydouble", path)
	}
	return Endpoint{Network: "tcp", Host: sa.GetAddress(), Port: sa.GetPortValue()}, nil
}

// compileUpstreamTLS builds a tls.Config reproducing Envoy's UpstreamTlsContext: SNI from sni,
// ALPN from alpn_protocols, the client certificate of tls_certificates or of the SDS Secret
// tls_certificate_sds_secret_configs names (returned: the caller presents the Secret as it is at
// each handshake, ClientTLS), and certificate verification only when a validation_context gives
// trusted_ca. Envoy does not verify the upstream certificate without one, and with one it
// checks the chain and, only when match_typed_subject_alt_names is set, the names: not the SNI.
func compileUpstreamTLS(ts *corev3.TransportSocket, path string) (cfg *tls.Config, secret string, err error) {
	if ts.GetName() != tlsTransportSocket {
		return nil, "", fmt.Errorf("%s.name: %q not implemented by envoydouble (want %s)", path, ts.GetName(), tlsTransportSocket)
	}
	var utc tlsv3.UpstreamTlsContext
	if err := unpack(ts.GetTypedConfig(), &utc, path+".typed_config"); err != nil {
		return nil, "", err
	}
	p := path + ".typed_config"
	if err := checkFields(&utc, p, "common_tls_context", "sni"); err != nil {
		return nil, "", err
	}
	ctc := utc.GetCommonTlsContext()
	if err := checkFields(ctc, p+".common_tls_context", "alpn_protocols", "validation_context", "tls_params", "tls_certificates",
		"tls_certificate_sds_secret_configs"); err != nil {
		return nil, "", err
	}
	if tp := ctc.GetTlsParams(); tp != nil {
		if err := checkFields(tp, p+".common_tls_context.tls_params", "tls_minimum_protocol_version"); err != nil {
			return nil, "", err
		}
	}
	cfg = &tls.Config{ServerName: utc.GetSni(), NextProtos: ctc.GetAlpnProtocols(), MinVersion: tls.VersionTLS12}
	sds := ctc.GetTlsCertificateSdsSecretConfigs()
	if n := len(sds) + len(ctc.GetTlsCertificates()); n > 1 && len(sds) > 0 {
		// ClientContextConfigImpl counts both: "Multiple TLS certificates are not supported for
		// client contexts" (compileClientCertificate says it of tls_certificates alone)
		return nil, "", fmt.Errorf("%s.common_tls_context.tls_certificate_sds_secret_configs: %d certificates counting tls_certificates; Envoy accepts one in an upstream (client) context", p, n)
	}
	if certs := ctc.GetTlsCertificates(); len(certs) > 0 {
		cert, err := compileClientCertificate(certs, p+".common_tls_context")
		if err != nil {
			return nil, "", err
		}
		// Envoy (BoringSSL) presents its certificate whenever the upstream asks for one,
		// whatever CAs the request names; Go's default would send none when they do not match.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if len(sds) == 1 {
		if secret, err = sdsSecretName(sds[0], join(p+".common_tls_context", idx("tls_certificate_sds_secret_configs", 0))); err != nil {
			return nil, "", err
		}
	}
	vc := ctc.GetValidationContext()
	if vc == nil {
		// Envoy: no validation_context, no verification of the upstream certificate.
		cfg.InsecureSkipVerify = true
		return cfg, secret, nil
	}
	vp := p + ".common_tls_context.validation_context"
	if err := checkFields(vc, vp, "trusted_ca", "match_typed_subject_alt_names", "system_root_certs"); err != nil {
		return nil, "", err
	}
	var roots *x509.CertPool
	switch {
	case vc.GetSystemRootCerts() != nil:
		var err error
		if roots, err = x509.SystemCertPool(); err != nil {
			return nil, "", fmt.Errorf("%s.system_root_certs: %w", vp, err)
		}
	case vc.GetTrustedCa() != nil:
		pem, err := dataSource(vc.GetTrustedCa(), vp+".trusted_ca")
		if err != nil {
			return nil, "", err
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("%s.trusted_ca: no PEM certificate found", vp)
		}
	default:
		return nil, "", fmt.Errorf("%s: trusted_ca or system_root_certs is required by envoydouble", vp)
	}
	var sans []sanMatcher
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		mp := join(vp, idx("match_typed_subject_alt_names", i))
		if err := checkFields(m, mp, "san_type", "matcher"); err != nil {
			return nil, "", err
		}
		if m.GetMatcher().GetExact() == "" {
			return nil, "", fmt.Errorf("%s.matcher: only exact is implemented by envoydouble", mp)
		}
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS, tlsv3.SubjectAltNameMatcher_IP_ADDRESS, tlsv3.SubjectAltNameMatcher_URI:
		default:
			return nil, "", fmt.Errorf("%s.san_type: %s not implemented by envoydouble (DNS, IP_ADDRESS, URI)", mp, m.GetSanType())
		}
		sans = append(sans, sanMatcher{typ: m.GetSanType(), exact: m.GetMatcher().GetExact()})
	}
	cfg.InsecureSkipVerify = true // verification below, as Envoy does it (chain, then SANs)
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		return verifyChain(raw, roots, sans)
	}
	return cfg, secret, nil
}

// compileClientCertificate reads the client certificate of an upstream TLS context:
// certificate_chain and private_key (PEM, from a file or inline), both required, as Envoy
// requires. Envoy refuses more than one certificate in a client context.
func compileClientCertificate(certs []*tlsv3.TlsCertificate, path string) (*tls.Certificate, error) {
	if len(certs) > 1 {
		return nil, fmt.Errorf("%s.tls_certificates: %d certificates; Envoy accepts one in an upstream (client) context", path, len(certs))
	}
	cp := join(path, idx("tls_certificates", 0))
	if err := checkFields(certs[0], cp, "certificate_chain", "private_key"); err != nil {
		return nil, err
	}
	if certs[0].GetCertificateChain() == nil || certs[0].GetPrivateKey() == nil {
		return nil, fmt.Errorf("%s: certificate_chain and private_key are both required", cp)
	}
	chain, err := dataSource(certs[0].GetCertificateChain(), cp+".certificate_chain")
	if err != nil {
		return nil, err
	}
	key, err := dataSource(certs[0].GetPrivateKey(), cp+".private_key")
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cp, err)
	}
	return &cert, nil
}

// sanMatcher is one match_typed_subject_alt_names entry: an exact DNS name, IP address or URI.
type sanMatcher struct {
	typ   tlsv3.SubjectAltNameMatcher_SanType
	exact string
}

// matches reproduces Envoy's DefaultCertValidator for the three SAN types: a DNS matcher
// compares the certificate's DNS SANs (a wildcard SAN covers one label, dnsNameMatch; a
// wildcard in the matcher is no wildcard, it matches only the same wildcard SAN), an IP_ADDRESS
// one its IP SANs in their text form, a URI one its URI SANs as the string matcher compares
// strings (exact: byte for byte, case-sensitive; Envoy's StringSanMatcher on the GEN_URI
// entry's text). A matcher never matches a SAN of another type.
func (m sanMatcher) matches(c *x509.Certificate) bool {
	switch m.typ {
	case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
		for _, ip := range c.IPAddresses {
			if ip.String() == m.exact {
				return true
			}
		}
		return false
	case tlsv3.SubjectAltNameMatcher_URI:
		for _, u := range c.URIs {
			if u.String() == m.exact {
				return true
			}
		}
		return false
	}
	for _, n := range c.DNSNames {
		if strings.EqualFold(n, m.exact) {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			// Envoy's dnsNameMatch: the wildcard stands for one whole, non-empty label.
			if label, host, found := strings.Cut(m.exact, "."); found && label != "" && strings.EqualFold(host, rest) {
				return true
			}
		}
	}
	return false
}

func verifyChain(raw [][]byte, roots *x509.CertPool, sans []sanMatcher) error {
	if len(raw) == 0 {
		return fmt.Errorf("upstream sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("upstream certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("upstream certificate: %w", err)
	}
	if len(sans) == 0 {
		return nil
	}
	for _, s := range sans {
		if s.matches(certs[0]) {
			return nil
		}
	}
	return fmt.Errorf("upstream certificate: no subject alt name matches %v", sans)
}

// dataSource reads an Envoy DataSource (filename, inline_string or inline_bytes).
func dataSource(ds *corev3.DataSource, path string) ([]byte, error) {
	switch {
	case ds.GetFilename() != "":
		b, err := os.ReadFile(ds.GetFilename())
		if err != nil {
			return nil, fmt.Errorf("%s.filename: %w", path, err)
		}
		return b, nil
	case ds.GetInlineString() != "":
		return []byte(ds.GetInlineString()), nil
	case len(ds.GetInlineBytes()) > 0:
		return ds.GetInlineBytes(), nil
	}
	return nil, fmt.Errorf("%s: only filename, inline_string and inline_bytes are implemented by envoydouble", path)
}
