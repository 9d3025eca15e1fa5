// HTTPRoute filters: applyFilter checks a rule's filters (RequestHeaderModifier,
// ResponseHeaderModifier, URLRewrite, RequestRedirect, CORS; the CORS policy itself is in
// cors.go) and records them on the compiledRule; the helpers here turn them into Envoy's forms
// (header values, redirect actions, path rewrites) for routeenvoy.go.

package translator

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

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
		add, rm, fld, err := headerMods(f.RequestHeaderModifier)
		if err != "" {
			return ".requestHeaderModifier" + fld, err
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
		add, rm, fld, err := headerMods(f.ResponseHeaderModifier)
		if err != "" {
			return ".responseHeaderModifier" + fld, err
		}
		c.respAdd, c.respRemove = append(c.respAdd, add...), append(c.respRemove, rm...)
	case gwv1.HTTPRouteFilterURLRewrite:
		u := f.URLRewrite
		if u == nil {
			return ".urlRewrite", "is required for this filter type"
		}
		if u.Hostname != nil {
			if msg := hostnameValueProblem(string(*u.Hostname)); msg != "" {
				return ".urlRewrite.hostname", msg
			}
			c.hostRewrite = string(*u.Hostname)
		}
		if p := u.Path; p != nil {
			fld, msg := checkPathModifier(p)
			if msg != "" {
				return ".urlRewrite.path" + fld, msg
			}
			if p.Type == gwv1.FullPathHTTPPathModifier {
				c.fullPath = *p.ReplaceFullPath
			} else {
				c.replacePrefix = p.ReplacePrefixMatch
			}
		}
	case gwv1.HTTPRouteFilterRequestRedirect:
		rd := f.RequestRedirect
		if rd == nil {
			return ".requestRedirect", "is required for this filter type"
		}
		if fld, err := checkRedirect(rd); err != "" {
			return ".requestRedirect" + fld, err
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

// headerMods builds a header filter's changes, or returns the field (".set[1].value") and
// message of the first it refuses. Envoy refuses a route configuration that adds or removes a
// ":"-prefixed or host header, on requests and on responses alike, or whose header value
// headerValueProblem refuses.
func headerMods(h *gwv1.HTTPHeaderFilter) ([]*corev3.HeaderValueOption, []string, string, string) {
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
	for _, list := range [...]struct {
		field   string
		headers []gwv1.HTTPHeader
		action  corev3.HeaderValueOption_HeaderAppendAction
	}{{"set", h.Set, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}, {"add", h.Add, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD}} {
		for j, s := range list.headers {
			if e := check(string(s.Name)); e != "" {
				return nil, nil, "", e
			}
			if e := headerValueProblem(s.Value); e != "" {
				return nil, nil, "." + list.field + "[" + strconv.Itoa(j) + "].value", e
			}
			add = append(add, headerOption(string(s.Name), s.Value, list.action))
		}
	}
	for _, n := range h.Remove {
		if e := check(n); e != "" {
			return nil, nil, "", e
		}
	}
	return add, h.Remove, "", ""
}

// maxHeaderValue is the longest header value Envoy takes: HeaderValue.value's max_bytes, the
// limit contract.MaxMetadataValue puts on ext_proc's metadata values.
const maxHeaderValue = contract.MaxMetadataValue

// headerValueProblem says why Envoy would refuse v as a header value, or "". It is the one check
// of every string the translator copies from its input into a header value (HeaderValue.value:
// an HTTPRoute's header changes, an AI backend's Authorization from a Secret) or into a field
// Envoy checks alike (host_redirect, path_redirect, prefix_rewrite, host_rewrite_literal, a regex
// rewrite's substitution), as go-control-plane's ValidateAll does (base.proto's
// `well_known_regex: HTTP_HEADER_VALUE, strict: false`, `^[^\x00\n\r]*$`, and max_bytes 16384):
// no NUL, CR or LF, at most 16384 bytes as Envoy gets it (each "%" written "%%", headerOption),
// and valid UTF-8, which a proto string must be (proto.Marshal fails otherwise, and the xDS
// server leaves the whole RouteConfiguration out). Envoy refusing one of them NACKs the whole
// RouteConfiguration of a port: no route of any tenant on it updates until it is gone. The
// message never quotes v, which may be a Secret's.
func headerValueProblem(v string) string {
	if !utf8.ValidString(v) {
		return "is not valid UTF-8, which Envoy's configuration cannot carry"
	}
	if i := strings.IndexAny(v, "\x00\r\n"); i >= 0 {
		name := map[byte]string{0: "a NUL", '\r': "a carriage return (CR)", '\n': "a line feed (LF)"}[v[i]]
		return fmt.Sprintf("has %s at byte %d: Envoy refuses NUL, CR and LF in a header value", name, i)
	}
	if n := len(v) + strings.Count(v, "%"); n > maxHeaderValue {
		return fmt.Sprintf("is %d bytes long as Envoy gets it (each %% written %%%%), over the %d it takes in a header value", n, maxHeaderValue)
	}
	return ""
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

// checkRedirect returns the field (a suffix of the filter's, "" for the filter) and the reason
// why a RequestRedirect cannot be honoured, or "", "".
func checkRedirect(rd *gwv1.HTTPRequestRedirectFilter) (string, string) {
	if rd.Scheme != nil && *rd.Scheme != "http" && *rd.Scheme != "https" {
		return ".scheme", fmt.Sprintf("scheme %q is not supported (http, https)", *rd.Scheme)
	}
	if rd.Hostname != nil {
		if msg := hostnameValueProblem(string(*rd.Hostname)); msg != "" {
			return ".hostname", msg
		}
	}
	if rd.Port != nil && (*rd.Port < 1 || *rd.Port > 65535) {
		return ".port", fmt.Sprintf("port %d is out of range", *rd.Port)
	}
	if p := rd.Path; p != nil {
		if fld, msg := checkPathModifier(p); msg != "" {
			return ".path" + fld, msg
		}
	}
	if rd.StatusCode != nil {
		if _, ok := redirectCode(*rd.StatusCode); !ok {
			return ".statusCode", fmt.Sprintf("statusCode %d is not supported (301, 302, 303, 307, 308)", *rd.StatusCode)
		}
	}
	return "", ""
}

// hostnameValueProblem says why a URLRewrite or RequestRedirect hostname cannot be honoured, or
// "": Envoy must take it (headerValueProblem: it becomes host_rewrite_literal or host_redirect)
// and it must be a Gateway API PreciseHostname.
func hostnameValueProblem(h string) string {
	if msg := headerValueProblem(h); msg != "" {
		return msg
	}
	return preciseHostnameProblem(h)
}

// checkPathModifier returns the field (a suffix of the modifier's) and the reason why a
// URLRewrite or RequestRedirect path cannot be honoured, or "", "": its type and value must agree,
// and Envoy must take the value (headerValueProblem: it becomes a regex rewrite's substitution, a
// path_redirect or a prefix_rewrite).
func checkPathModifier(p *gwv1.HTTPPathModifier) (string, string) {
	var fld string
	var v *string
	switch {
	case p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
		fld, v = ".replaceFullPath", p.ReplaceFullPath
	case p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
		fld, v = ".replacePrefixMatch", p.ReplacePrefixMatch
	default:
		return "", "type and its value do not agree"
	}
	if msg := headerValueProblem(*v); msg != "" {
		return fld, msg
	}
	return "", ""
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
