package translator

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// corsFilterName is Envoy's CORS HTTP filter and the key of its per-route CorsPolicy. The filter is
// first in every listener's chain and does nothing on a route without a CorsPolicy (Envoy's
// CorsFilter: no policy, not enabled); a rule with the Gateway API CORS filter carries one.
const corsFilterName = "envoy.filters.http.cors"

// corsDefaultMaxAge is Gateway API's default maxAge (seconds), what the CRD fills in when the field
// is left out; a file cannot tell a missing maxAge from 0.
const corsDefaultMaxAge = 5

// corsMethods are the methods Gateway API's HTTPMethodWithWildcard allows besides "*".
var corsMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// corsPolicy builds the per-route CorsPolicy of a Gateway API CORS filter, or returns the field
// (a suffix of ".cors") and message of what cannot be honoured. Envoy's CorsFilter answers a
// preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed origin
// itself with 200, echoing the origin in Access-Control-Allow-Origin (never "*", so a wildcard
// origin with allowCredentials is answered as Gateway API requires), and echoing the request's
// Access-Control-Request-Method or -Headers when allowMethods or allowHeaders is "*". A preflight
// from another origin is answered by Envoy too (forward_not_matching_preflights false, as Envoy
// Gateway sets it): 200 without Access-Control-Allow-Origin, so the browser refuses the call, and
// neither ext_proc nor the upstream sees the preflight.
func corsPolicy(f *gwv1.HTTPCORSFilter) (*anypb.Any, string, string) {
	p := &corsv3.CorsPolicy{ForwardNotMatchingPreflights: wrapperspb.Bool(false)}
	for i, o := range f.AllowOrigins {
		if o == "*" && len(f.AllowOrigins) > 1 {
			return nil, fmt.Sprintf(".allowOrigins[%d]", i), `"*" cannot be listed with other origins`
		}
		m, err := corsOrigin(string(o))
		if err != "" {
			return nil, fmt.Sprintf(".allowOrigins[%d]", i), err
		}
		p.AllowOriginStringMatch = append(p.AllowOriginStringMatch, m)
	}
	methods := make([]string, len(f.AllowMethods))
	for i, m := range f.AllowMethods {
		switch {
		case m == "*" && len(f.AllowMethods) > 1:
			return nil, fmt.Sprintf(".allowMethods[%d]", i), `"*" cannot be listed with other methods`
		case m != "*" && !slices.Contains(corsMethods, string(m)):
			return nil, fmt.Sprintf(".allowMethods[%d]", i), fmt.Sprintf("%q is not a method (%s or *)", m, strings.Join(corsMethods, ", "))
		}
		methods[i] = string(m)
	}
	p.AllowMethods = strings.Join(methods, ", ")
	credentials := f.AllowCredentials != nil && *f.AllowCredentials
	var fld, err string
	if p.AllowHeaders, fld, err = corsHeaders(".allowHeaders", f.AllowHeaders, false, credentials); err != "" {
		return nil, fld, err
	}
	if p.ExposeHeaders, fld, err = corsHeaders(".exposeHeaders", f.ExposeHeaders, true, credentials); err != "" {
		return nil, fld, err
	}
	switch {
	case f.MaxAge < 0:
		return nil, ".maxAge", fmt.Sprintf("%d: must be at least 1 (seconds)", f.MaxAge)
	case f.MaxAge == 0:
		p.MaxAge = strconv.Itoa(corsDefaultMaxAge)
	default:
		p.MaxAge = strconv.Itoa(int(f.MaxAge))
	}
	if credentials {
		p.AllowCredentials = wrapperspb.Bool(true)
	}
	return mustAny(p), "", ""
}

// corsHeaders joins a list of header names as Envoy writes it in the header's value, or returns
// the field and message of a name that cannot be honoured. "*" alone is written as is: in
// allowHeaders Envoy answers it with the request's Access-Control-Request-Headers; in
// exposeHeaders it is sent as "*", which browsers read as a header named "*" on requests with
// credentials, so it is refused with allowCredentials (Gateway API: the gateway cannot use "*"
// then).
func corsHeaders(field string, names []gwv1.HTTPHeaderName, expose, credentials bool) (string, string, string) {
	out := make([]string, len(names))
	for i, n := range names {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case n == "*" && expose && credentials:
			return "", f, `"*" cannot be honoured with allowCredentials: browsers read it as a header named "*" on requests with credentials; list the headers to expose`
		case n == "*" && !expose && len(names) > 1:
			return "", f, `"*" cannot be listed with other headers`
		case n != "*" && !validHeaderName(string(n)):
			return "", f, fmt.Sprintf("%q is not a header name", n)
		}
		out[i] = string(n)
	}
	return strings.Join(out, ", "), "", ""
}

// Host patterns of wildcard origins, matched against what browsers send: the serialized origin,
// scheme and host in lower case, the port only when it is not the scheme's default.
const (
	// corsAnyHost matches a whole host: a DNS name or an IPv6 literal in brackets.
	corsAnyHost = `(\[[0-9a-f:.]+\]|[a-z0-9.-]+)`
	// corsLabels matches one or more DNS labels, each followed by a dot: the "*." of "*.example.com"
	// (Gateway API: "*" is a greedy match to the left, any number of DNS labels).
	corsLabels = `([a-z0-9-]+\.)+`
)

// corsHostLabel is a DNS label of an origin's host (Gateway API's CORSOrigin pattern).
var corsHostLabel = regexp.MustCompile(`^[a-z0-9-]+$`)

// corsOrigin builds the matcher of one allowOrigins entry: "*" (any origin), SCHEME://HOST[:PORT]
// (exact), or with a wildcard host, "*" or "*.DOMAIN" (safe_regex, a full match). Scheme and host
// are compared in lower case and a default port (80 for http, 443 for https) is left out, as
// browsers serialize the Origin header; Envoy compares the header as sent.
func corsOrigin(o string) (*matcherv3.StringMatcher, string) {
	if o == "*" {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}, ""
	}
	const form = `must be "*" or SCHEME://HOST[:PORT] with scheme http or https, a host of DNS labels, "*" or "*.DOMAIN", and no path`
	scheme, authority, ok := strings.Cut(strings.ToLower(o), "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return nil, fmt.Sprintf("%q %s", o, form)
	}
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i+1:]
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return nil, fmt.Sprintf("%q: port %q is not a number from 1 to 65535", o, port)
		}
		if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
			port = "" // browsers leave the scheme's default port out of Origin
		}
	}
	wildcard := ""
	switch {
	case host == "*":
		wildcard, host = corsAnyHost, ""
	case strings.HasPrefix(host, "*."):
		wildcard, host = corsLabels, host[2:]
	}
	if host != "" || wildcard == "" {
		for l := range strings.SplitSeq(host, ".") {
			if !corsHostLabel.MatchString(l) {
				return nil, fmt.Sprintf("%q %s", o, form)
			}
		}
	}
	if port != "" {
		port = ":" + port
	}
	if wildcard == "" {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: scheme + "://" + host + port}}, ""
	}
	re := regexp.QuoteMeta(scheme+"://") + wildcard + regexp.QuoteMeta(host+port)
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}, ""
}

// withFilter returns a copy of a typed_per_filter_config (shared maps are never changed) with
// name set to a.
func withFilter(m map[string]*anypb.Any, name string, a *anypb.Any) map[string]*anypb.Any {
	out := make(map[string]*anypb.Any, len(m)+1)
	maps.Copy(out, m)
	out[name] = a
	return out
}
