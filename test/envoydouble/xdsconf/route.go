package xdsconf

//lint:file-ignore SA1019 Envoy still accepts deprecated fields (header matchers, HeaderValueOption.append); the double reads them as Envoy does

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
)

// RouteConfig is a RouteConfiguration (from RDS or inline in the HTTP connection manager).
type RouteConfig struct {
	// Name is the configuration's name, what an HCM's rds.route_config_name asks for.
	Name string
	// VirtualHosts are the virtual hosts, domains lower-cased (unique over all of them).
	VirtualHosts []*VirtualHost
	// IgnorePortInHostMatching is route_config.ignore_port_in_host_matching: without it Envoy
	// matches the Host header, port included, against the domains.
	IgnorePortInHostMatching bool
	// MostSpecificWins is most_specific_header_mutations_wins.
	MostSpecificWins bool
	// InternalOnlyHeaders is internal_only_headers (lower case): the connection manager removes
	// them from every request that is not internal, before any filter runs.
	InternalOnlyHeaders []string
	// Headers are the configuration's header operations, the least specific level.
	Headers HeaderOps
	// PerFilter is the configuration's typed_per_filter_config, the least specific level.
	PerFilter PerFilter
}

// VirtualHost is one virtual host.
type VirtualHost struct {
	// Name is the virtual host's name (xds.virtual_host_name).
	Name string
	// Domains are the host names it serves, lower case: exact, "*.suffix", "prefix*" or "*".
	Domains []string
	// Routes are the routes in order; the first that matches is taken.
	Routes []*Route
	// Headers are the virtual host's header operations.
	Headers HeaderOps
	// PerFilter is the virtual host's typed_per_filter_config.
	PerFilter PerFilter
}

// Route is one route: a match and one action (Forward, Redirect or Direct).
type Route struct {
	// Name is the route's name (xds.route_name, %ROUTE_NAME%).
	Name string
	// Match is the route's match.
	Match RouteMatch
	// Forward is the route action; nil unless the route forwards.
	Forward *Forward
	// Redirect is the redirect action; nil unless the route redirects.
	Redirect *Redirect
	// Direct is the direct_response action; nil unless the route answers itself.
	Direct *DirectResponse
	// Headers are the route's header operations.
	Headers HeaderOps
	// PerFilter is the route's typed_per_filter_config.
	PerFilter PerFilter
	// Metadata is metadata.filter_metadata (by filter namespace), what the access log's
	// %METADATA(ROUTE:...)% reads.
	Metadata map[string]*structpb.Struct
}

// PathKind is the RouteMatch.path_specifier.
type PathKind int

// Path specifiers the double implements.
const (
	MatchPrefix PathKind = iota
	MatchPath
	MatchRegex
	MatchPathSeparatedPrefix
)

// RouteMatch is RouteMatch: path specifier, case_sensitive, headers and query_parameters.
type RouteMatch struct {
	// Kind is the path specifier: prefix, path, safe_regex or path_separated_prefix.
	Kind PathKind
	// Value is the prefix or path (lower case when not CaseSensitive); unused for MatchRegex.
	Value string
	// Regex is the safe_regex, anchored at both ends; nil unless Kind is MatchRegex.
	Regex *regexp.Regexp
	// CaseSensitive is case_sensitive (default true); it does not apply to Regex.
	CaseSensitive bool
	// Headers are the header matchers; all must match.
	Headers []HeaderMatch
	// Query are the query_parameters matchers; all must match.
	Query []QueryMatch
}

// HeaderMatch is a HeaderMatcher.
type HeaderMatch struct {
	// Name is the header's name in lower case.
	Name    string
	Present *bool // present_match
	// String is the value's matcher (exact_match and the like become one); nil when Present
	// is set.
	String *StringMatch
	// Invert is invert_match: the result is negated.
	Invert       bool
	MissingEmpty bool // treat_missing_header_as_empty
}

// QueryMatch is a QueryParameterMatcher.
type QueryMatch struct {
	// Name is the query parameter's name, compared as sent (not percent-decoded).
	Name string
	// Present is present_match. The parameter must be present in any case; without String
	// nothing more is checked.
	Present bool
	// String is string_match, applied to the parameter's first value; nil when unset.
	String *StringMatch
}

// StringMatch is a StringMatcher (exact, prefix, suffix, contains, safe_regex; ignore_case).
type StringMatch struct {
	exact, prefix, suffix, contains string
	regex                           *regexp.Regexp
	ignoreCase                      bool
	kind                            int
}

// Forward is a RouteAction: which cluster, how the request is rewritten, timeouts.
type Forward struct {
	Clusters []WeightedCluster // one entry for `cluster`
	// ClusterNotFoundCode is the status when the cluster does not exist:
	// cluster_not_found_response_code as HTTP status (default 503).
	ClusterNotFoundCode int
	// PrefixRewrite is prefix_rewrite; nil when unset.
	PrefixRewrite *string
	// RegexRewrite is regex_rewrite's pattern (unanchored); nil when unset.
	RegexRewrite *regexp.Regexp
	// RegexSubstitution is regex_rewrite's substitution, in Go's Expand syntax (${1}).
	RegexSubstitution string
	// HostRewrite is host_rewrite_literal ("" = the host is not rewritten).
	HostRewrite string
	// AutoHostRewrite is auto_host_rewrite: the host becomes the upstream host's hostname.
	AutoHostRewrite bool
	// Timeout is RouteAction.timeout: 15 s when unset, 0 = none (needed for SSE streams).
	Timeout time.Duration
	// IdleTimeout is RouteAction.idle_timeout; nil = the HCM's stream_idle_timeout.
	IdleTimeout *time.Duration
	// HashPolicy is hash_policy, in order: what RING_HASH clusters and UseHashPolicy hash.
	HashPolicy []HashPolicy
	// UseHashPolicy is weighted_clusters.use_hash_policy: the cluster is picked with the hash of
	// HashPolicy instead of the stream's random value when the request gives one.
	UseHashPolicy bool
}

// WeightedCluster is one entry of weighted_clusters (or the single cluster). Its
// typed_per_filter_config is the most specific of all (Envoy picks the weighted cluster when it
// matches the route, and the filters see it as the route).
type WeightedCluster struct {
	// Name is the cluster's name.
	Name string
	// Weight is the cluster's weight (1 for a single cluster).
	Weight uint32
	// PerFilter is the ClusterWeight's typed_per_filter_config, the most specific level.
	PerFilter PerFilter
	// HostRewrite is the ClusterWeight's host_rewrite_literal; the route's host rewrite, applied
	// later, wins over it.
	HostRewrite string
	// Headers are the ClusterWeight's header operations, applied before the route's, virtual
	// host's and route configuration's whatever most_specific_header_mutations_wins says.
	Headers HeaderOps
}

// HashPolicy is a RouteAction.HashPolicy the double implements.
type HashPolicy struct {
	// Header is header.header_name in lower case: the header's joined value is hashed.
	Header string
	// SourceIP is connection_properties.source_ip: the downstream remote address is hashed.
	SourceIP bool
	// Query is query_parameter.name: the parameter's first value is hashed.
	Query string
	// Terminal is terminal: when this policy gives a hash, the later ones are skipped.
	Terminal bool
}

// Redirect is a RedirectAction.
type Redirect struct {
	// Scheme is scheme_redirect, "https" for https_redirect; "" keeps the request's.
	Scheme string
	// Host is host_redirect; "" keeps the request's.
	Host string
	// Port is port_redirect; 0 keeps the request's (a scheme change drops a default port).
	Port uint32
	// Path is path_redirect, which may carry a query; nil when unset.
	Path *string
	// PrefixRewrite is prefix_rewrite, applied to the matched prefix; nil when unset.
	PrefixRewrite *string
	// RegexRewrite is regex_rewrite's pattern; nil when unset.
	RegexRewrite *regexp.Regexp
	// RegexSubst is regex_rewrite's substitution, in Go's Expand syntax (${1}).
	RegexSubst string
	// Code is response_code as HTTP status (301 by default).
	Code int
	// StripQuery is strip_query: the location has no query.
	StripQuery bool
}

// DirectResponse is a DirectResponseAction.
type DirectResponse struct {
	// Status is the answer's HTTP status.
	Status int
	// Body is the answer's body (nil = none), at most max_direct_response_body_size_bytes.
	Body []byte
}

// HeaderOps are the *_headers_to_add / *_headers_to_remove of a route, virtual host or route
// configuration.
type HeaderOps struct {
	// RequestAdd is request_headers_to_add, applied after RequestRemove.
	RequestAdd []HeaderAdd
	// RequestRemove is request_headers_to_remove, names in lower case.
	RequestRemove []string
	// ResponseAdd is response_headers_to_add, applied after ResponseRemove.
	ResponseAdd []HeaderAdd
	// ResponseRemove is response_headers_to_remove, names in lower case.
	ResponseRemove []string
}

// AppendAction is HeaderValueOption.append_action.
type AppendAction int

// Append actions, as corev3.HeaderValueOption_HeaderAppendAction.
const (
	AppendIfExistsOrAdd AppendAction = iota
	AddIfAbsent
	OverwriteIfExistsOrAdd
	OverwriteIfExists
)

// HeaderAdd is one HeaderValueOption of a route table.
type HeaderAdd struct {
	// Key is the header's name in lower case.
	Key string
	// Value is the literal value ("%%" unescaped to "%"; raw_value when set).
	Value string
	// Action is append_action, or what the deprecated append says when set.
	Action AppendAction
	// KeepEmpty is keep_empty_value: an empty Value is still added.
	KeepEmpty bool
}

// CompileRouteConfig checks and compiles a RouteConfiguration.
func CompileRouteConfig(rc *routev3.RouteConfiguration) (*RouteConfig, error) {
	path := fmt.Sprintf("route_configuration %q", rc.GetName())
	if err := validate(rc, path); err != nil {
		return nil, err
	}
	return compileRouteConfig(rc, path)
}

func compileRouteConfig(rc *routev3.RouteConfiguration, path string) (*RouteConfig, error) {
	// validate_clusters only changes when Envoy refuses a config with unknown clusters (off for
	// RDS by default); max_direct_response_body_size_bytes is checked below.
	if err := checkFields(rc, path, "name", "virtual_hosts", "response_headers_to_add",
		"response_headers_to_remove", "request_headers_to_add", "request_headers_to_remove",
		"most_specific_header_mutations_wins", "validate_clusters", "ignore_port_in_host_matching",
		"typed_per_filter_config", "max_direct_response_body_size_bytes", "internal_only_headers"); err != nil {
		return nil, err
	}
	out := &RouteConfig{Name: rc.GetName(), IgnorePortInHostMatching: rc.GetIgnorePortInHostMatching(),
		MostSpecificWins: rc.GetMostSpecificHeaderMutationsWins()}
	for _, h := range rc.GetInternalOnlyHeaders() { // header names, checked by validate
		out.InternalOnlyHeaders = append(out.InternalOnlyHeaders, strings.ToLower(h))
	}
	var err error
	if out.Headers, err = compileHeaderOps(rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove(),
		rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove(), path); err != nil {
		return nil, err
	}
	if out.PerFilter, err = compilePerFilter(rc.GetTypedPerFilterConfig(), path); err != nil {
		return nil, err
	}
	maxBody := uint32(4096) // Envoy's default max_direct_response_body_size_bytes
	if m := rc.GetMaxDirectResponseBodySizeBytes(); m != nil {
		maxBody = m.GetValue()
	}
	seen := map[string]string{}
	for i, vh := range rc.GetVirtualHosts() {
		vp := join(path, idx("virtual_hosts", i))
		v, err := compileVirtualHost(vh, vp, maxBody)
		if err != nil {
			return nil, err
		}
		// Envoy: "Only unique values for domains are permitted".
		for _, d := range v.Domains {
			if other, dup := seen[d]; dup {
				return nil, fmt.Errorf("%s.domains: domain %q is also in virtual host %q", vp, d, other)
			}
			seen[d] = v.Name
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out, nil
}

func compileVirtualHost(vh *routev3.VirtualHost, path string, maxBody uint32) (*VirtualHost, error) {
	path = fmt.Sprintf("%s(%s)", path, vh.GetName())
	if err := checkFields(vh, path, "name", "domains", "routes", "request_headers_to_add",
		"request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config", "metadata"); err != nil {
		return nil, err
	}
	out := &VirtualHost{Name: vh.GetName()}
	for _, d := range vh.GetDomains() {
		out.Domains = append(out.Domains, strings.ToLower(d))
	}
	var err error
	if out.Headers, err = compileHeaderOps(vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove(),
		vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove(), path); err != nil {
		return nil, err
	}
	if out.PerFilter, err = compilePerFilter(vh.GetTypedPerFilterConfig(), path); err != nil {
		return nil, err
	}
	for i, r := range vh.GetRoutes() {
		cr, err := compileRoute(r, join(path, idx("routes", i)), maxBody)
		if err != nil {
			return nil, err
		}
		out.Routes = append(out.Routes, cr)
	}
	return out, nil
}

func compileRoute(r *routev3.Route, path string, maxBody uint32) (*Route, error) {
	if err := checkFields(r, path, "name", "match", "route", "redirect", "direct_response",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add",
		"response_headers_to_remove", "typed_per_filter_config", "metadata", "decorator"); err != nil {
		return nil, err
	}
	out := &Route{Name: r.GetName(), Metadata: r.GetMetadata().GetFilterMetadata()}
	var err error
	if out.Match, err = compileMatch(r.GetMatch(), path+".match"); err != nil {
		return nil, err
	}
	if out.Headers, err = compileHeaderOps(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove(),
		r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove(), path); err != nil {
		return nil, err
	}
	if out.PerFilter, err = compilePerFilter(r.GetTypedPerFilterConfig(), path); err != nil {
		return nil, err
	}
	switch {
	case r.GetRoute() != nil:
		out.Forward, err = compileForward(r.GetRoute(), path+".route")
	case r.GetRedirect() != nil:
		out.Redirect, err = compileRedirect(r.GetRedirect(), path+".redirect")
	case r.GetDirectResponse() != nil:
		out.Direct, err = compileDirect(r.GetDirectResponse(), path+".direct_response", maxBody)
	default:
		err = fmt.Errorf("%s: action not implemented by envoydouble (route, redirect, direct_response)", path)
	}
	if err != nil {
		return nil, err
	}
	if out.Forward != nil && out.Forward.PrefixRewrite != nil && out.Match.Kind == MatchRegex {
		return nil, fmt.Errorf("%s.route.prefix_rewrite: cannot be used with a safe_regex match", path)
	}
	return out, nil
}

func compileMatch(m *routev3.RouteMatch, path string) (RouteMatch, error) {
	if err := checkFields(m, path, "prefix", "path", "safe_regex", "path_separated_prefix",
		"case_sensitive", "headers", "query_parameters"); err != nil {
		return RouteMatch{}, err
	}
	out := RouteMatch{CaseSensitive: true}
	if cs := m.GetCaseSensitive(); cs != nil {
		out.CaseSensitive = cs.GetValue()
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Kind, out.Value = MatchPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		out.Kind, out.Value = MatchPath, ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.Kind, out.Value = MatchPathSeparatedPrefix, ps.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(ps.SafeRegex, path+".safe_regex")
		if err != nil {
			return RouteMatch{}, err
		}
		out.Kind, out.Regex = MatchRegex, re
	default:
		return RouteMatch{}, fmt.Errorf("%s: path specifier not implemented by envoydouble", path)
	}
	if !out.CaseSensitive {
		out.Value = strings.ToLower(out.Value)
	}
	for i, h := range m.GetHeaders() {
		hm, err := compileHeaderMatch(h, join(path, idx("headers", i)))
		if err != nil {
			return RouteMatch{}, err
		}
		out.Headers = append(out.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qp := join(path, idx("query_parameters", i))
		if err := checkFields(q, qp, "name", "string_match", "present_match"); err != nil {
			return RouteMatch{}, err
		}
		qm := QueryMatch{Name: q.GetName(), Present: q.GetPresentMatch()}
		if q.GetStringMatch() != nil {
			sm, err := compileStringMatch(q.GetStringMatch(), qp+".string_match")
			if err != nil {
				return RouteMatch{}, err
			}
			qm.String = sm
		}
		out.Query = append(out.Query, qm)
	}
	return out, nil
}

func compileHeaderMatch(h *routev3.HeaderMatcher, path string) (HeaderMatch, error) {
	if err := checkFields(h, path, "name", "exact_match", "safe_regex_match", "present_match",
		"prefix_match", "suffix_match", "contains_match", "string_match", "invert_match",
		"treat_missing_header_as_empty"); err != nil {
		return HeaderMatch{}, err
	}
	out := HeaderMatch{Name: strings.ToLower(h.GetName()), Invert: h.GetInvertMatch(), MissingEmpty: h.GetTreatMissingHeaderAsEmpty()}
	var sm *matcherv3.StringMatcher
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		v := s.PresentMatch
		out.Present = &v
		return out, nil
	case *routev3.HeaderMatcher_StringMatch:
		sm = s.StringMatch
	case *routev3.HeaderMatcher_ExactMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}}
	case *routev3.HeaderMatcher_PrefixMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}}
	case *routev3.HeaderMatcher_SuffixMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s.SuffixMatch}}
	case *routev3.HeaderMatcher_ContainsMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s.ContainsMatch}}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}}
	case nil:
		// Envoy: no specifier = the header must be present.
		v := true
		out.Present = &v
		return out, nil
	default:
		return HeaderMatch{}, fmt.Errorf("%s: header match specifier not implemented by envoydouble", path)
	}
	m, err := compileStringMatch(sm, path)
	if err != nil {
		return HeaderMatch{}, err
	}
	out.String = m
	return out, nil
}

const (
	smExact = iota
	smPrefix
	smSuffix
	smContains
	smRegex
)

func compileStringMatch(m *matcherv3.StringMatcher, path string) (*StringMatch, error) {
	if err := checkFields(m, path, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return nil, err
	}
	out := &StringMatch{ignoreCase: m.GetIgnoreCase()}
	low := func(s string) string {
		if out.ignoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.kind, out.exact = smExact, low(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		out.kind, out.prefix = smPrefix, low(p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		out.kind, out.suffix = smSuffix, low(p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		out.kind, out.contains = smContains, low(p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex, path+".safe_regex")
		if err != nil {
			return nil, err
		}
		out.kind, out.regex = smRegex, re
	default:
		return nil, fmt.Errorf("%s: match pattern not implemented by envoydouble", path)
	}
	return out, nil
}

// Match applies the StringMatcher to v. ignore_case does not apply to safe_regex (Envoy).
func (m *StringMatch) Match(v string) bool {
	if m.ignoreCase && m.kind != smRegex {
		v = strings.ToLower(v)
	}
	switch m.kind {
	case smExact:
		return v == m.exact
	case smPrefix:
		return strings.HasPrefix(v, m.prefix)
	case smSuffix:
		return strings.HasSuffix(v, m.suffix)
	case smContains:
		return strings.Contains(v, m.contains)
	default:
		return m.regex.MatchString(v)
	}
}

// compileRegex compiles an RE2 RegexMatcher anchored at both ends: Envoy's safe_regex is a full
// match. Go's regexp implements RE2 syntax.
func compileRegex(r *matcherv3.RegexMatcher, path string) (*regexp.Regexp, error) {
	if err := checkFields(r, path, "regex", "google_re2"); err != nil {
		return nil, err
	}
	re, err := regexp.Compile("^(?:" + r.GetRegex() + ")$")
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %w", path, err)
	}
	return re, nil
}

// compileRewriteRegex compiles the pattern of a regex_rewrite: unanchored, every match replaced.
func compileRewriteRegex(r *matcherv3.RegexMatchAndSubstitute, path string) (*regexp.Regexp, string, error) {
	if err := checkFields(r, path, "pattern", "substitution"); err != nil {
		return nil, "", err
	}
	if err := checkFields(r.GetPattern(), path+".pattern", "regex", "google_re2"); err != nil {
		return nil, "", err
	}
	re, err := regexp.Compile(r.GetPattern().GetRegex())
	if err != nil {
		return nil, "", fmt.Errorf("%s.pattern.regex: %w", path, err)
	}
	// RE2 substitutions use \1; Go's Expand uses ${1}.
	sub := regexp.MustCompile(`\\(\d)`).ReplaceAllString(r.GetSubstitution(), "$${$1}")
	return re, sub, nil
}

func compileForward(a *routev3.RouteAction, path string) (*Forward, error) {
	// hash_policy is read by RING_HASH clusters and by weighted_clusters with use_hash_policy, as
	// in Envoy.
	if err := checkFields(a, path, "cluster", "weighted_clusters", "cluster_not_found_response_code",
		"prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite", "timeout",
		"idle_timeout", "hash_policy"); err != nil {
		return nil, err
	}
	out := &Forward{Timeout: 15 * time.Second, ClusterNotFoundCode: 503}
	switch a.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_NOT_FOUND:
		out.ClusterNotFoundCode = 404
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		out.ClusterNotFoundCode = 500
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		out.Clusters = []WeightedCluster{{Name: cs.Cluster, Weight: 1}}
	case *routev3.RouteAction_WeightedClusters:
		wp := path + ".weighted_clusters"
		// header_name (the random value from a request header) is refused.
		if err := checkFields(cs.WeightedClusters, wp, "clusters", "total_weight", "use_hash_policy"); err != nil {
			return nil, err
		}
		out.UseHashPolicy = cs.WeightedClusters.GetUseHashPolicy().GetValue()
		for i, c := range cs.WeightedClusters.GetClusters() {
			cp := join(wp, idx("clusters", i))
			if err := checkFields(c, cp, "name", "weight", "typed_per_filter_config", "host_rewrite_literal",
				"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"); err != nil {
				return nil, err
			}
			pf, err := compilePerFilter(c.GetTypedPerFilterConfig(), cp)
			if err != nil {
				return nil, err
			}
			ops, err := compileHeaderOps(c.GetRequestHeadersToAdd(), c.GetRequestHeadersToRemove(),
				c.GetResponseHeadersToAdd(), c.GetResponseHeadersToRemove(), cp)
			if err != nil {
				return nil, err
			}
			out.Clusters = append(out.Clusters, WeightedCluster{Name: c.GetName(), Weight: c.GetWeight().GetValue(), PerFilter: pf,
				HostRewrite: c.GetHostRewriteLiteral(), Headers: ops})
		}
		// WeightedClusterSpecifierPlugin refuses a sum of weights of 0 or over 2^32-1.
		var total uint64
		for _, c := range out.Clusters {
			total += uint64(c.Weight)
		}
		if total == 0 || total > math.MaxUint32 {
			return nil, fmt.Errorf("%s.clusters: the sum of the weights is %d, Envoy requires 1 to %d", wp, total, uint32(math.MaxUint32))
		}
	default:
		return nil, fmt.Errorf("%s: cluster specifier not implemented by envoydouble (cluster, weighted_clusters)", path)
	}
	if a.GetPrefixRewrite() != "" {
		p := a.GetPrefixRewrite()
		out.PrefixRewrite = &p
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		re, sub, err := compileRewriteRegex(rr, path+".regex_rewrite")
		if err != nil {
			return nil, err
		}
		out.RegexRewrite, out.RegexSubstitution = re, sub
	}
	out.HostRewrite = a.GetHostRewriteLiteral()
	out.AutoHostRewrite = a.GetAutoHostRewrite().GetValue()
	if t := a.GetTimeout(); t != nil {
		out.Timeout = t.AsDuration()
	}
	if t := a.GetIdleTimeout(); t != nil {
		d := t.AsDuration()
		out.IdleTimeout = &d
	}
	for i, hp := range a.GetHashPolicy() {
		hpp := join(path, idx("hash_policy", i))
		if err := checkFields(hp, hpp, "header", "connection_properties", "query_parameter", "terminal"); err != nil {
			return nil, err
		}
		h := HashPolicy{Terminal: hp.GetTerminal()}
		switch {
		case hp.GetHeader() != nil:
			if err := checkFields(hp.GetHeader(), hpp+".header", "header_name"); err != nil {
				return nil, err
			}
			h.Header = strings.ToLower(hp.GetHeader().GetHeaderName())
		case hp.GetConnectionProperties() != nil:
			h.SourceIP = hp.GetConnectionProperties().GetSourceIp()
		case hp.GetQueryParameter() != nil:
			h.Query = hp.GetQueryParameter().GetName()
		}
		out.HashPolicy = append(out.HashPolicy, h)
	}
	return out, nil
}

func compileRedirect(r *routev3.RedirectAction, path string) (*Redirect, error) {
	if err := checkFields(r, path, "https_redirect", "scheme_redirect", "host_redirect", "port_redirect",
		"path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"); err != nil {
		return nil, err
	}
	out := &Redirect{Scheme: r.GetSchemeRedirect(), Host: r.GetHostRedirect(), Port: r.GetPortRedirect(), StripQuery: r.GetStripQuery()}
	if r.GetHttpsRedirect() {
		out.Scheme = "https"
	}
	switch p := r.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		v := p.PathRedirect
		out.Path = &v
	case *routev3.RedirectAction_PrefixRewrite:
		v := p.PrefixRewrite
		out.PrefixRewrite = &v
	case *routev3.RedirectAction_RegexRewrite:
		re, sub, err := compileRewriteRegex(p.RegexRewrite, path+".regex_rewrite")
		if err != nil {
			return nil, err
		}
		out.RegexRewrite, out.RegexSubst = re, sub
	}
	out.Code = map[routev3.RedirectAction_RedirectResponseCode]int{
		routev3.RedirectAction_MOVED_PERMANENTLY:  301,
		routev3.RedirectAction_FOUND:              302,
		routev3.RedirectAction_SEE_OTHER:          303,
		routev3.RedirectAction_TEMPORARY_REDIRECT: 307,
		routev3.RedirectAction_PERMANENT_REDIRECT: 308,
	}[r.GetResponseCode()]
	return out, nil
}

func compileDirect(d *routev3.DirectResponseAction, path string, maxBody uint32) (*DirectResponse, error) {
	if err := checkFields(d, path, "status", "body"); err != nil {
		return nil, err
	}
	out := &DirectResponse{Status: int(d.GetStatus())}
	if d.GetBody() != nil {
		b, err := dataSource(d.GetBody(), path+".body")
		if err != nil {
			return nil, err
		}
		if uint32(len(b)) > maxBody {
			return nil, fmt.Errorf("%s.body: %d bytes exceeds max_direct_response_body_size_bytes %d", path, len(b), maxBody)
		}
		out.Body = b
	}
	return out, nil
}

func compileHeaderOps(reqAdd []*corev3.HeaderValueOption, reqRemove []string, respAdd []*corev3.HeaderValueOption, respRemove []string, path string) (HeaderOps, error) {
	var out HeaderOps
	var err error
	if out.RequestAdd, err = compileHeaderAdds(reqAdd, path+".request_headers_to_add"); err != nil {
		return out, err
	}
	if out.ResponseAdd, err = compileHeaderAdds(respAdd, path+".response_headers_to_add"); err != nil {
		return out, err
	}
	for i, h := range reqRemove {
		if !modifiable(h) {
			return out, fmt.Errorf("%s.request_headers_to_remove[%d]: %q: :-prefixed or host headers may not be removed (Envoy's HeaderParser)", path, i, h)
		}
		out.RequestRemove = append(out.RequestRemove, strings.ToLower(h))
	}
	for i, h := range respRemove {
		if !modifiable(h) {
			return out, fmt.Errorf("%s.response_headers_to_remove[%d]: %q: :-prefixed or host headers may not be removed (Envoy's HeaderParser)", path, i, h)
		}
		out.ResponseRemove = append(out.ResponseRemove, strings.ToLower(h))
	}
	return out, nil
}

// modifiable is Envoy's HeaderUtility::isModifiableHeader: header operations of a route table may
// not touch pseudo-headers or host; Envoy refuses such a configuration.
func modifiable(name string) bool {
	return !strings.HasPrefix(name, ":") && !strings.EqualFold(name, "host")
}

func compileHeaderAdds(opts []*corev3.HeaderValueOption, path string) ([]HeaderAdd, error) {
	var out []HeaderAdd
	for i, o := range opts {
		p := join(path, idx("", i))
		p = strings.Replace(p, ".[", "[", 1)
		if err := checkFields(o, p, "header", "append", "append_action", "keep_empty_value"); err != nil {
			return nil, err
		}
		if err := checkFields(o.GetHeader(), p+".header", "key", "value", "raw_value"); err != nil {
			return nil, err
		}
		if !modifiable(o.GetHeader().GetKey()) {
			return nil, fmt.Errorf("%s.header.key: %q: :-prefixed or host headers may not be modified (Envoy's HeaderParser)", p, o.GetHeader().GetKey())
		}
		v := o.GetHeader().GetValue()
		if len(o.GetHeader().GetRawValue()) > 0 {
			v = string(o.GetHeader().GetRawValue())
		}
		// The value is a substitution format string; the double implements literal values only.
		if strings.Contains(strings.ReplaceAll(v, "%%", ""), "%") {
			return nil, fmt.Errorf("%s.header.value: command operators (%q) not implemented by envoydouble", p, v)
		}
		h := HeaderAdd{Key: strings.ToLower(o.GetHeader().GetKey()), Value: strings.ReplaceAll(v, "%%", "%"), KeepEmpty: o.GetKeepEmptyValue()}
		// Envoy's HeaderParser: `append` (deprecated) wins when set and append_action must then be
		// the default; otherwise append_action, whose default is APPEND_IF_EXISTS_OR_ADD.
		if o.GetAppend() != nil {
			if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				return nil, fmt.Errorf("%s: both append and append_action are set", p)
			}
			h.Action = OverwriteIfExistsOrAdd
			if o.GetAppend().GetValue() {
				h.Action = AppendIfExistsOrAdd
			}
		} else {
			h.Action = AppendAction(o.GetAppendAction())
		}
		out = append(out, h)
	}
	return out, nil
}

// PerFilter is one level's typed_per_filter_config, by filter name (the key), compiled by the
// config's type. Envoy hands a filter the config stored under its name; a config of another
// filter's type is not its own and is ignored by it, as the dynamic_cast in
// Http::Utility::resolveMostSpecificPerFilterConfig does.
type PerFilter struct {
	// ExtProc are the ext_proc per-route configs by filter name (nil = none).
	ExtProc map[string]*ExtProcPerRoute
	// StatefulSession are the stateful_session per-route configs by filter name (nil = none).
	StatefulSession map[string]*StatefulSessionPerRoute
	// Cors are the cors per-route configs (CorsPolicy) by filter name (nil = none).
	Cors map[string]*CorsPolicy
	// RateLimit are the local_ratelimit per-route configs (LocalRateLimit) by filter name (nil =
	// none), each with its own token bucket.
	RateLimit map[string]*LocalRateLimit
}

// compilePerFilter compiles typed_per_filter_config. The double implements the ext_proc,
// stateful_session, cors and local_ratelimit per-route configs; any other type is refused.
func compilePerFilter(m map[string]*anypb.Any, path string) (PerFilter, error) {
	var out PerFilter
	for name, a := range m {
		p := fmt.Sprintf("%s.typed_per_filter_config[%q]", path, name)
		var err error
		switch a.GetTypeUrl() {
		case corsPolicyType:
			err = addPerFilter(&out.Cors, name, a, p, compileCorsPolicy)
		case LocalRateLimitFilterType:
			err = addPerFilter(&out.RateLimit, name, a, p, compileLocalRateLimit)
		case statefulSessionPerRouteType:
			err = addPerFilter(&out.StatefulSession, name, a, p, compileStatefulSessionPerRoute)
		default:
			err = addPerFilter(&out.ExtProc, name, a, p, compileExtProcPerRoute)
		}
		if err != nil {
			return PerFilter{}, err
		}
	}
	return out, nil
}

// addPerFilter compiles a per-filter config and stores it under name, making the map on first use.
func addPerFilter[T any](m *map[string]*T, name string, a *anypb.Any, path string, compile func(*anypb.Any, string) (*T, error)) error {
	c, err := compile(a, path)
	if err != nil {
		return err
	}
	if *m == nil {
		*m = map[string]*T{}
	}
	(*m)[name] = c
	return nil
}

// ApplyRequest applies the request header operations: removals first, then additions (Envoy's
// HeaderParser::evaluateHeaders).
func (o HeaderOps) ApplyRequest(h *headers.Map) { applyOps(h, o.RequestRemove, o.RequestAdd) }

// ApplyResponse applies the response header operations.
func (o HeaderOps) ApplyResponse(h *headers.Map) { applyOps(h, o.ResponseRemove, o.ResponseAdd) }

func applyOps(h *headers.Map, remove []string, add []HeaderAdd) {
	for _, k := range remove {
		h.Del(k)
	}
	for _, a := range add {
		if a.Value == "" && !a.KeepEmpty {
			continue
		}
		switch a.Action {
		case AppendIfExistsOrAdd:
			h.Add(a.Key, a.Value)
		case AddIfAbsent:
			if !h.Has(a.Key) {
				h.Add(a.Key, a.Value)
			}
		case OverwriteIfExistsOrAdd:
			h.Set(a.Key, a.Value)
		case OverwriteIfExists:
			if h.Has(a.Key) {
				h.Set(a.Key, a.Value)
			}
		}
	}
}

// HostForMatching returns the host used to select a virtual host: lower-cased, port removed only
// when ignore_port_in_host_matching is set (Envoy's RouteMatcher::findVirtualHost).
func (rc *RouteConfig) HostForMatching(authority string) string {
	host := strings.ToLower(authority)
	if rc.IgnorePortInHostMatching {
		host = StripPort(host)
	}
	return host
}

// StripPort removes a trailing :port from a host (IPv6 literals in brackets keep their colons).
func StripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.HasSuffix(host, "]") {
		return host
	}
	if strings.HasPrefix(host, "[") && !strings.Contains(host[:i], "]") {
		return host
	}
	for _, c := range host[i+1:] {
		if c < '0' || c > '9' {
			return host
		}
	}
	return host[:i]
}

// FindVirtualHost selects the virtual host as Envoy does: an exact domain first, then the longest
// matching suffix wildcard ("*.example.com" or "*-bar.example.com"), then the longest prefix
// wildcard ("foo.*"), then "*". A wildcard matches at least one character.
func (rc *RouteConfig) FindVirtualHost(authority string) *VirtualHost {
	host := rc.HostForMatching(authority)
	var best *VirtualHost
	bestLen, bestRank := -1, 4
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			rank, n := domainRank(d, host)
			if rank < 0 {
				continue
			}
			if rank < bestRank || (rank == bestRank && n > bestLen) {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	return best
}

// domainRank returns (0 exact | 1 suffix | 2 prefix | 3 default, matched length) or -1.
func domainRank(d, host string) (int, int) {
	switch {
	case d == "*":
		return 3, 0
	case strings.HasPrefix(d, "*"):
		s := d[1:]
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			return 1, len(s)
		}
	case strings.HasSuffix(d, "*"):
		p := d[:len(d)-1]
		if len(host) > len(p) && strings.HasPrefix(host, p) {
			return 2, len(p)
		}
	case d == host:
		return 0, len(d)
	}
	return -1, 0
}

// FindRoute returns the first route of vh that matches, in order (Envoy's first-match rule).
func (vh *VirtualHost) FindRoute(h *headers.Map) *Route {
	for _, r := range vh.Routes {
		if r.Match.Matches(h) {
			return r
		}
	}
	return nil
}

// Matches reports whether the request headers match.
func (m *RouteMatch) Matches(h *headers.Map) bool {
	full := h.Value(":path")
	pathOnly := full
	if i := strings.IndexAny(pathOnly, "?#"); i >= 0 {
		pathOnly = pathOnly[:i]
	}
	switch m.Kind {
	case MatchPrefix:
		// Envoy's PathMatcher matches the path without its query and fragment
		// (PathUtil::removeQueryAndFragment), as for the other path specifiers.
		if !hasPrefix(pathOnly, m.Value, m.CaseSensitive) {
			return false
		}
	case MatchPath:
		p := pathOnly
		if !m.CaseSensitive {
			p = strings.ToLower(p)
		}
		if p != m.Value {
			return false
		}
	case MatchPathSeparatedPrefix:
		p := pathOnly
		if !m.CaseSensitive {
			p = strings.ToLower(p)
		}
		if p != m.Value && !strings.HasPrefix(p, m.Value+"/") {
			return false
		}
	case MatchRegex:
		if !m.Regex.MatchString(pathOnly) {
			return false
		}
	}
	for _, hm := range m.Headers {
		if !hm.Matches(h) {
			return false
		}
	}
	for _, qm := range m.Query {
		// ConfigUtility::QueryParameterMatcher: the first value of the name, present or not.
		v, ok := QueryParam(full, qm.Name)
		if !ok || (qm.String != nil && !qm.String.Match(v)) {
			return false
		}
	}
	return true
}

// QueryParam returns the first value of name in the query of path as Envoy reads it for route
// matching and hash_policy (QueryParamsMulti::parseQueryString): pairs split on '&' only, neither
// names nor values percent-decoded ('+' stays '+'), a name without '=' has the value "".
func QueryParam(path, name string) (string, bool) {
	_, q, found := strings.Cut(path, "?")
	if !found {
		return "", false
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

func hasPrefix(s, prefix string, caseSensitive bool) bool {
	if caseSensitive {
		return strings.HasPrefix(s, prefix)
	}
	return len(s) >= len(prefix) && strings.ToLower(s[:len(prefix)]) == prefix
}

// Matches applies the HeaderMatcher as Envoy's HeaderUtility::matchHeaders does, including its
// rules for a missing header with invert_match and present_match.
func (hm *HeaderMatch) Matches(h *headers.Map) bool {
	v, ok := h.Joined(hm.Name)
	if !ok && !hm.MissingEmpty {
		if hm.Invert {
			return hm.Present != nil && *hm.Present
		}
		return hm.Present != nil && !*hm.Present
	}
	var m bool
	if hm.Present != nil {
		m = *hm.Present // present (or treated as empty): present_match: true matches
	} else {
		m = hm.String.Match(v)
	}
	return m != hm.Invert
}

// PickCluster picks the cluster of a Forward action as Envoy's WeightedClusterSpecifierPlugin
// does (pickClusterIndex): the value modulo the total weight falls in the interval of one cluster,
// in the configured order. The value is the hash of the route's hash_policy when use_hash_policy
// is set and the request gives a hash (hash), else the stream's random value (random: Envoy
// passes the stream id, so a route matched again after clear_route_cache picks the same cluster).
func (f *Forward) PickCluster(random uint64, hash *uint64) *WeightedCluster {
	if len(f.Clusters) == 1 {
		return &f.Clusters[0]
	}
	v := random
	if f.UseHashPolicy && hash != nil {
		v = *hash
	}
	var total uint64
	for _, c := range f.Clusters {
		total += uint64(c.Weight)
	}
	if total == 0 {
		return &f.Clusters[0]
	}
	n := v % total
	for i := range f.Clusters {
		if n < uint64(f.Clusters[i].Weight) {
			return &f.Clusters[i]
		}
		n -= uint64(f.Clusters[i].Weight)
	}
	return &f.Clusters[len(f.Clusters)-1]
}

// RewritePath applies prefix_rewrite (to the matched prefix) or regex_rewrite (to the path
// without its query, which is kept) to the request path.
func RewritePath(path string, m *RouteMatch, prefix *string, re *regexp.Regexp, sub string) string {
	if prefix != nil && (m.Kind == MatchPrefix || m.Kind == MatchPathSeparatedPrefix) {
		return *prefix + path[len(m.Value):]
	}
	if prefix != nil && m.Kind == MatchPath {
		q := ""
		if i := strings.IndexByte(path, '?'); i >= 0 {
			q = path[i:]
		}
		return *prefix + q
	}
	if re != nil {
		p, q := path, ""
		if i := strings.IndexByte(path, '?'); i >= 0 {
			p, q = path[:i], path[i:]
		}
		return re.ReplaceAllString(p, sub) + q
	}
	return path
}
