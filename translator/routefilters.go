// HTTPRoute filters: applyFilter checks a rule's filters (RequestHeaderModifier,
// ResponseHeaderModifier, URLRewrite, RequestRedirect, CORS; the CORS policy itself is in
// cors.go) and records them on the compiledRule; the helpers here turn them into Envoy's forms
// (header values, redirect actions, path rewrites) for routeenvoy.go.

package translator

import (
	"fmt"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/contract"
)

// applyFilter records a filter Envoy does natively; it returns the field and message when the
// filter cannot be honoured.
func (t *translation) applyFilter(c *compiledRule, f *gwv1.HTTPRouteFilter) (string, string) {
	switch f.Type {
	case gwv1.HTTPRouteFilterRequestHeaderModifier:
		if f.RequestHeaderModifier == nil {
			return ".requestHeaderModifier", "is required for this filter type"
		}
		add, rm, err := headerMods(f.RequestHeaderModifier)
		if err != "" {
			return ".requestHeaderModifier", err
		}
		c.reqAdd, c.reqRemove = append(c.reqAdd, add...), append(c.reqRemove, rm...)
		c.reqChanges.Remove = append(c.reqChanges.Remove, rm...)
		for _, h := range f.RequestHeaderModifier.Set {
			c.reqChanges.Add = append(c.reqChanges.Add, contract.HeaderAdd{Name: strings.ToLower(string(h.Name)), Value: h.Value})
		}
		for _, h := range f.RequestHeaderModifier.Add {
			c.reqChanges.Add = append(c.reqChanges.Add, contract.HeaderAdd{Name: strings.ToLower(string(h.Name)), Value: h.Value, Append: true})
		}
	case gwv1.HTTPRouteFilterResponseHeaderModifier:
		if f.ResponseHeaderModifier == nil {
			return ".responseHeaderModifier", "is required for this filter type"
		}
		add, rm, err := headerMods(f.ResponseHeaderModifier)
		if err != "" {
			return ".responseHeaderModifier", err
		}
		c.respAdd, c.respRemove = append(c.respAdd, add...), append(c.respRemove, rm...)
	case gwv1.HTTPRouteFilterURLRewrite:
		u := f.URLRewrite
		if u == nil {
			return ".urlRewrite", "is required for this filter type"
		}
		if u.Hostname != nil {
			c.hostRewrite = string(*u.Hostname)
		}
		if p := u.Path; p != nil {
			switch {
			case p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
				c.fullPath = *p.ReplaceFullPath
			case p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
				c.replacePrefix = p.ReplacePrefixMatch
			default:
				return ".urlRewrite.path", "type and its value do not agree"
			}
		}
	case gwv1.HTTPRouteFilterRequestRedirect:
		rd := f.RequestRedirect
		if rd == nil {
			return ".requestRedirect", "is required for this filter type"
		}
		if err := checkRedirect(rd); err != "" {
			return ".requestRedirect", err
		}
		c.redirect = rd
	case gwv1.HTTPRouteFilterCORS:
		if f.CORS == nil {
			return ".cors", "is required for this filter type"
		}
		if c.cors != nil {
			return ".type", "a rule can have one CORS filter only"
		}
		p, fld, err := corsPolicy(f.CORS)
		if err != "" {
			return ".cors" + fld, err
		}
		c.cors = p
	default:
		return ".type", fmt.Sprintf("filter %s is not supported (supported: RequestHeaderModifier, ResponseHeaderModifier, URLRewrite, RequestRedirect, CORS)", f.Type)
	}
	return "", ""
}

// reservedHeaderPrefix starts the headers mcpgate's parts pass each other (contract.HeaderMux,
// which names the targets the mux may reach, contract.HeaderMuxCluster): an HTTPRoute's filters
// may not set, add or remove them. A weighted cluster's x-mcpgate-mux would lose to the route's
// own headers, which Envoy applies after the weighted cluster's.
const reservedHeaderPrefix = "x-mcpgate-"

// headerMods builds a header filter's changes. Envoy refuses a route configuration that adds or
// removes a ":"-prefixed or host header, on requests and on responses alike.
func headerMods(h *gwv1.HTTPHeaderFilter) ([]*corev3.HeaderValueOption, []string, string) {
	var add []*corev3.HeaderValueOption
	check := func(n string) string {
		switch {
		case !validHeaderName(n) || !modifiableHeader(n):
			return fmt.Sprintf("header %q cannot be modified", n)
		case len(n) >= len(reservedHeaderPrefix) && strings.EqualFold(n[:len(reservedHeaderPrefix)], reservedHeaderPrefix):
			return fmt.Sprintf("header %q cannot be modified: the %s headers are mcpgate's own", n, reservedHeaderPrefix)
		}
		return ""
	}
	for _, s := range h.Set {
		if e := check(string(s.Name)); e != "" {
			return nil, nil, e
		}
		add = append(add, headerOption(string(s.Name), s.Value, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	}
	for _, s := range h.Add {
		if e := check(string(s.Name)); e != "" {
			return nil, nil, e
		}
		add = append(add, headerOption(string(s.Name), s.Value, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
	}
	for _, n := range h.Remove {
		if e := check(n); e != "" {
			return nil, nil, e
		}
	}
	return add, h.Remove, ""
}

// modifiableHeader tells whether Envoy lets a route add or remove header n (its
// HeaderUtility::isModifiableHeader: not ":"-prefixed, not host).
func modifiableHeader(n string) bool {
	return !strings.HasPrefix(n, ":") && !strings.EqualFold(n, "host")
}

// headerOption adds a literal header value. Envoy reads header values as format strings: a "%"
// starts a command operator (an unknown one makes Envoy refuse the whole RouteConfiguration, a
// known one such as %REQ(authorization)% copies a request header), so "%" is written "%%".
func headerOption(name, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(name), Value: strings.ReplaceAll(value, "%", "%%")},
		AppendAction: action}
}

// redirectCode is Envoy's code for a RequestRedirect status code, and whether Envoy can answer it.
func redirectCode(status int) (routev3.RedirectAction_RedirectResponseCode, bool) {
	switch status {
	case 301:
		return routev3.RedirectAction_MOVED_PERMANENTLY, true
	case 302:
		return routev3.RedirectAction_FOUND, true
	case 303:
		return routev3.RedirectAction_SEE_OTHER, true
	case 307:
		return routev3.RedirectAction_TEMPORARY_REDIRECT, true
	case 308:
		return routev3.RedirectAction_PERMANENT_REDIRECT, true
	}
	return 0, false
}

// checkRedirect returns why a RequestRedirect cannot be honoured, or "".
func checkRedirect(rd *gwv1.HTTPRequestRedirectFilter) string {
	if rd.Scheme != nil && *rd.Scheme != "http" && *rd.Scheme != "https" {
		return fmt.Sprintf("scheme %q is not supported (http, https)", *rd.Scheme)
	}
	if rd.Port != nil && (*rd.Port < 1 || *rd.Port > 65535) {
		return fmt.Sprintf("port %d is out of range", *rd.Port)
	}
	if p := rd.Path; p != nil {
		if !(p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil) &&
			!(p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil) {
			return "path: type and its value do not agree"
		}
	}
	if rd.StatusCode != nil {
		if _, ok := redirectCode(*rd.StatusCode); !ok {
			return fmt.Sprintf("statusCode %d is not supported (301, 302, 303, 307, 308)", *rd.StatusCode)
		}
	}
	return ""
}

// redirectAction builds a checked RequestRedirect for a listener on listenerPort. The port of
// the Location is as Gateway API derives it: the redirect's port, else the well-known port of its
// scheme, else the listener's port. Envoy writes port_redirect into the Location, and without it
// keeps the request's Host port, unless the hostname changes: so the port is always set, except
// that a new hostname on the well-known port of the scheme goes without (Gateway API: no ":80"
// for http, no ":443" for https). A ReplacePrefixMatch path is set per match (prefixRewrite),
// like URLRewrite's.
func redirectAction(rd *gwv1.HTTPRequestRedirectFilter, listenerPort int32) *routev3.RedirectAction {
	wellKnown := map[string]uint32{"http": 80, "https": 443}
	ra := &routev3.RedirectAction{ResponseCode: routev3.RedirectAction_FOUND}
	scheme, port := "http", uint32(listenerPort) // mcpgate's listeners are HTTP
	if rd.Scheme != nil {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *rd.Scheme}
		scheme, port = *rd.Scheme, wellKnown[*rd.Scheme]
	}
	if rd.Port != nil {
		port = uint32(*rd.Port)
	}
	if rd.Hostname == nil || port != wellKnown[scheme] {
		ra.PortRedirect = port
	}
	if rd.Hostname != nil {
		ra.HostRedirect = string(*rd.Hostname)
	}
	if p := rd.Path; p != nil && p.Type == gwv1.FullPathHTTPPathModifier {
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *p.ReplaceFullPath}
	}
	if rd.StatusCode != nil {
		ra.ResponseCode, _ = redirectCode(*rd.StatusCode) // checked by checkRedirect
	}
	return ra
}

func fullPathRewrite(path string) *matcherv3.RegexMatchAndSubstitute {
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: path}
}

// prefixRewrite implements ReplacePrefixMatch for a PathPrefix match with Gateway API
// semantics (element-wise prefixes, no doubled or lost slashes).
func prefixRewrite(prefix, replace string) *matcherv3.RegexMatchAndSubstitute {
	rep := strings.TrimRight(replace, "/")
	switch {
	case prefix == "":
		return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/"}, Substitution: rep + "/"}
	case rep == "":
		return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + "/*"}, Substitution: "/"}
	}
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix)}, Substitution: rep}
}
