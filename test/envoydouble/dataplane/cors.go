package dataplane

// The CORS filter (envoy.filters.http.cors), as Envoy runs it (source/extensions/filters/http/
// cors/cors_filter.cc, CorsFilter), first in the chain:
//
//   - initializeCorsPolicies: the CorsPolicy of every level of the route's typed_per_filter_config
//     under the filter's name (Http::Utility::getAllPerFilterConfig: route configuration, virtual
//     host, route, weighted cluster), most specific first. Each setting comes from the first
//     policy that has it (a non-empty string or list, a set allow_credentials). The route's and
//     virtual host's own `cors` fields, read when no per-filter policy exists, are refused by
//     the double's route compiler, so none is read here.
//   - decodeHeaders: nothing without a route entry (no route, a redirect, a direct response), or
//     when no policy is enabled (no policy: the filter does nothing at all), or without a
//     non-empty Origin. The origin is allowed when a matcher matches "*" or the origin; an allowed
//     origin is latched for the response. From here the request is a CORS request. A preflight is
//     OPTIONS with a non-empty Access-Control-Request-Method; one from an origin not allowed
//     continues down the chain when forward_not_matching_preflights holds (the first level that
//     sets it decides; unset everywhere: true); any other is answered by the filter: 200 with,
//     for an allowed origin only, Access-Control-Allow-Origin (the origin), then
//     -Allow-Credentials "true" when allowed, -Allow-Methods (allow_methods, or the request's
//     Access-Control-Request-Method for "*"), -Allow-Headers (allow_headers, or the request's
//     Access-Control-Request-Headers for "*", empty when it sent none), -Max-Age. The answer is
//     sent with decoder_callbacks_->encodeHeaders, not sendLocalReply: the route's response header
//     operations are not applied, and it passes through every encoder filter
//     (FilterManager::encodeHeaders(nullptr, ...) starts at the first), ext_proc included, whose
//     encodeHeaders merges the route's per-route config (mergePerRouteConfig) since its
//     decodeHeaders never ran; details "cors_response".
//   - encodeHeaders, on every response of a CORS request with an allowed origin, its own preflight
//     answer included: Access-Control-Allow-Origin set to the origin, -Allow-Credentials "true"
//     when allowed, -Expose-Headers when set. Local replies sent through the filter chain (the
//     router's, the connection manager's, ext_proc's immediate responses before any response
//     headers) pass through it as well (sendLocalReplyViaFilterChain encodes from the first
//     encoder filter); a local reply sent once response headers exist goes straight to the codec
//     (sendDirectLocalReply) without it.
//
// Headers are Envoy's inline headers: a repeated request header is read joined with ",", a
// response header is set (replacing any value).

import (
	"net/http"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// corsState is what the CORS filter keeps of a request between its decoder and encoder.
type corsState struct {
	// policies are the route's CorsPolicies, most specific first.
	policies []*xdsconf.CorsPolicy
	// request: the filter is enabled for the request and it has an Origin (is_cors_request_).
	request bool
	// origin is the allowed origin, latched ("" when the origin is not allowed).
	origin string
}

// corsDecode is the CORS filter's decodeHeaders; true when it answered the request (a preflight
// of an allowed origin).
func (st *stream) corsDecode() bool {
	f := st.lis.HCM.Cors
	if f == nil || st.route == nil || st.route.Forward == nil {
		return false // no route entry
	}
	levels := st.perFilterLevels()
	for i := len(levels) - 1; i >= 0; i-- {
		if p := levels[i].Cors[f.Name]; p != nil {
			st.cors.policies = append(st.cors.policies, p)
		}
	}
	if len(st.cors.policies) == 0 {
		return false // enabled() is false without a policy; filter_enabled is refused, so a policy is enabled
	}
	origin, _ := st.req.Joined("origin")
	if origin == "" {
		return false
	}
	if st.corsOriginAllowed(origin) {
		st.cors.origin = origin
	}
	st.cors.request = true
	reqMethod, _ := st.req.Joined("access-control-request-method")
	if st.req.Value(":method") != http.MethodOptions || reqMethod == "" {
		return false
	}
	if st.cors.origin == "" && st.corsForwardNotMatching() {
		return false // the preflight goes down the chain
	}
	h := &headers.Map{}
	h.Add(":status", "200")
	if st.cors.origin != "" {
		h.Add("access-control-allow-origin", origin)
	}
	if st.corsCredentials() {
		h.Add("access-control-allow-credentials", "true")
	}
	if m := st.corsSetting(func(p *xdsconf.CorsPolicy) string { return p.AllowMethods }); m == "*" {
		h.Add("access-control-allow-methods", reqMethod)
	} else if m != "" {
		h.Add("access-control-allow-methods", m)
	}
	if ah := st.corsSetting(func(p *xdsconf.CorsPolicy) string { return p.AllowHeaders }); ah == "*" {
		reqHeaders, _ := st.req.Joined("access-control-request-headers")
		h.Add("access-control-allow-headers", reqHeaders)
	} else if ah != "" {
		h.Add("access-control-allow-headers", ah)
	}
	if ma := st.corsSetting(func(p *xdsconf.CorsPolicy) string { return p.MaxAge }); ma != "" {
		h.Add("access-control-max-age", ma)
	}
	st.details = "cors_response"
	st.encode(h, nil, true, st.ctx)
	return true
}

// corsForwardNotMatching is CorsFilter::forwardNotMatchingPreflights: the first policy that sets
// it decides, true when none does.
func (st *stream) corsForwardNotMatching() bool {
	for _, p := range st.cors.policies {
		if p.ForwardNotMatchingPreflights != nil {
			return *p.ForwardNotMatchingPreflights
		}
	}
	return true
}

// corsEncode is the CORS filter's encodeHeaders.
func (st *stream) corsEncode(h *headers.Map) {
	if !st.cors.request || st.cors.origin == "" {
		return
	}
	h.Set("access-control-allow-origin", st.cors.origin)
	if st.corsCredentials() {
		h.Set("access-control-allow-credentials", "true")
	}
	if eh := st.corsSetting(func(p *xdsconf.CorsPolicy) string { return p.ExposeHeaders }); eh != "" {
		h.Set("access-control-expose-headers", eh)
	}
}

// corsOriginAllowed is CorsFilter::isOriginAllowed: the first policy with origins decides; a
// matcher that matches "*" allows every origin.
func (st *stream) corsOriginAllowed(origin string) bool {
	for _, p := range st.cors.policies {
		if len(p.AllowOrigins) == 0 {
			continue
		}
		for _, m := range p.AllowOrigins {
			if m.Match("*") || m.Match(origin) {
				return true
			}
		}
		return false
	}
	return false
}

// corsSetting is a string setting of the first policy that has it ("" when none has).
func (st *stream) corsSetting(get func(*xdsconf.CorsPolicy) string) string {
	for _, p := range st.cors.policies {
		if v := get(p); v != "" {
			return v
		}
	}
	return ""
}

// corsCredentials is allow_credentials of the first policy that sets it (default false).
func (st *stream) corsCredentials() bool {
	for _, p := range st.cors.policies {
		if p.AllowCredentials != nil {
			return *p.AllowCredentials
		}
	}
	return false
}
