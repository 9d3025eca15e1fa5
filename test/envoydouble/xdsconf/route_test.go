package xdsconf_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

func compileRC(t *testing.T, rc *routev3.RouteConfiguration) *xdsconf.RouteConfig {
	t.Helper()
	c, err := xdsconf.CompileRouteConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVirtualHostSelection(t *testing.T) {
	vh := func(name string, domains ...string) *routev3.VirtualHost {
		return &routev3.VirtualHost{Name: name, Domains: domains}
	}
	rc := &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{
		vh("default", "*"), vh("exact", "api.example.com"), vh("suffix", "*.example.com"),
		vh("longer-suffix", "*.b.example.com"), vh("prefix", "api.*"), vh("with-port", "port.example:8080"),
	}}
	for _, ignorePort := range []bool{false, true} {
		rc.IgnorePortInHostMatching = ignorePort
		c := compileRC(t, rc)
		for host, want := range map[string]string{
			"api.example.com": "exact",
			"API.Example.COM": "exact",
			"x.example.com":   "suffix",
			"x.b.example.com": "longer-suffix",
			"example.com":     "default", // a wildcard matches at least one character
			"api.other":       "prefix",
			"other":           "default",
			// ignore_port_in_host_matching strips the request's port, not the domains' ports.
			"port.example:8080":    map[bool]string{false: "with-port", true: "default"}[ignorePort],
			"api.example.com:8080": map[bool]string{false: "prefix", true: "exact"}[ignorePort],
		} {
			if got := c.FindVirtualHost(host); got == nil || got.Name != want {
				t.Errorf("ignore_port=%v host %q: got %v, want %s", ignorePort, host, got, want)
			}
		}
	}
}

func hdrs(kv ...string) *headers.Map {
	h := &headers.Map{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestRouteMatching(t *testing.T) {
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	route := func(name string, m *routev3.RouteMatch) *routev3.Route {
		return &routev3.Route{Name: name, Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}}}
	}
	rc := compileRC(t, &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{
		route("absent-header", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/absent"},
			Headers: []*routev3.HeaderMatcher{{Name: "x-a", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}}}),
		route("inverted-exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/inv"},
			Headers: []*routev3.HeaderMatcher{{Name: "x-a", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("no")}, InvertMatch: true}}}),
		route("query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/q"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: exact("1")}}}}),
		route("query-decoded", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/qd"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: exact("a b")}}}}),
		route("query-raw", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/qr"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: exact("a%20b")}}}}),
		// Envoy's QueryParameterMatcher with present_match only: the name is there, any value
		// (ConfigUtility::QueryParameterMatcher::matches: no value matcher, present)
		route("query-present", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/qp"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "sessionId", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}),
		// a pseudo-header matched like any header (HeaderMatcher: "pseudo-headers such as :method")
		route("method", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/m"},
			Headers: []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("GET")}}}}),
		route("prefix-with-query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/pq?x"}}),
		route("regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/items/[0-9]+"}}}),
		route("separated", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/mcp"}}),
		route("insensitive", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/CASE"}, CaseSensitive: wrapperspb.Bool(false)}),
		route("catch-all", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}),
	}}}})
	vh := rc.VirtualHosts[0]
	for _, c := range []struct {
		h    *headers.Map
		want string
	}{
		{hdrs(":path", "/absent"), "absent-header"},
		{hdrs(":path", "/absent", "x-a", "1"), "catch-all"},
		// Envoy: a missing header never matches an inverted string matcher.
		{hdrs(":path", "/inv"), "catch-all"},
		{hdrs(":path", "/inv", "x-a", "yes"), "inverted-exact"},
		{hdrs(":path", "/inv", "x-a", "no"), "catch-all"},
		{hdrs(":path", "/q?v=1"), "query"},
		{hdrs(":path", "/q?v=2"), "catch-all"},
		// Envoy matches query parameters raw (QueryParamsMulti::parseQueryString does not
		// percent-decode), the first value of a name.
		{hdrs(":path", "/qd?v=a%20b"), "catch-all"},
		{hdrs(":path", "/qd?v=a+b"), "catch-all"},
		{hdrs(":path", "/qr?v=a%20b"), "query-raw"},
		{hdrs(":path", "/q?v=1&v=2"), "query"},
		{hdrs(":path", "/q?v=2&v=1"), "catch-all"},
		{hdrs(":path", "/q?v"), "catch-all"},
		{hdrs(":path", "/qp?sessionId=x"), "query-present"},
		{hdrs(":path", "/qp?a=1&sessionId"), "query-present"},
		{hdrs(":path", "/qp?sessionid=x"), "catch-all"},
		{hdrs(":path", "/qp?session%49d=x"), "catch-all"},
		{hdrs(":path", "/m", ":method", "GET"), "method"},
		{hdrs(":path", "/m", ":method", "POST"), "catch-all"},
		// A prefix matches the path without its query (PathMatcher).
		{hdrs(":path", "/pq?x=1"), "catch-all"},
		{hdrs(":path", "/items/42?x=1"), "regex"},
		{hdrs(":path", "/items/4a"), "catch-all"},
		{hdrs(":path", "/mcp"), "separated"},
		{hdrs(":path", "/mcp/x"), "separated"},
		{hdrs(":path", "/mcpx"), "catch-all"},
		{hdrs(":path", "/case/x"), "insensitive"},
	} {
		r := vh.FindRoute(c.h)
		if r == nil || r.Name != c.want {
			t.Errorf("%v: got %v, want %s", c.h.All(), r, c.want)
		}
	}
}

func TestRewritePath(t *testing.T) {
	m := &xdsconf.RouteMatch{Kind: xdsconf.MatchPrefix, Value: "/old/"}
	p := "/new/"
	if got := xdsconf.RewritePath("/old/a?b=1", m, &p, nil, ""); got != "/new/a?b=1" {
		t.Errorf("prefix_rewrite: %q", got)
	}
	rc := compileRC(t, &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
			RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/v1/(.*)$"}, Substitution: "/api/\\1"}}}}}}}})
	f := rc.VirtualHosts[0].Routes[0].Forward
	if got := xdsconf.RewritePath("/v1/tools?x=1", &rc.VirtualHosts[0].Routes[0].Match, nil, f.RegexRewrite, f.RegexSubstitution); got != "/api/tools?x=1" {
		t.Errorf("regex_rewrite: %q", got)
	}
}

// TestRefusesHeaderOperationsOnPseudoHeadersAndHost: Envoy refuses a route table that adds or
// removes :-prefixed headers or host (HeaderParser, HeaderUtility::isModifiableHeader).
func TestRefusesHeaderOperationsOnPseudoHeadersAndHost(t *testing.T) {
	for _, r := range []*routev3.Route{
		{RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "Host", Value: "x"}}}},
		{ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: ":status", Value: "200"}}}},
		{RequestHeadersToRemove: []string{":authority"}},
		{ResponseHeadersToRemove: []string{"host"}},
	} {
		r.Name = "r"
		r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
		r.Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}}
		_, err := xdsconf.CompileRouteConfig(&routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{r}}}})
		if err == nil || !strings.Contains(err.Error(), "routes[0]") || !strings.Contains(err.Error(), "may not be") {
			t.Errorf("%v: got %v, want a refusal naming the field", r, err)
		}
	}
}
