package dataplane

// The stateful session filter (envoy.filters.http.stateful_session) with the envelope session
// state (envoy.http.stateful_session.envelope), as Envoy runs it:
//
//   - StatefulSession::decodeHeaders (source/extensions/filters/http/stateful_session/
//     stateful_session.cc): the most specific StatefulSessionPerRoute (weighted cluster, route,
//     virtual host, route configuration; Http::Utility::resolveMostSpecificPerFilterConfig)
//     disables the filter or replaces its whole config; without a session state the filter does
//     nothing (EmptySessionStateFactory). Otherwise the session state is created from the request
//     headers and, when it yields an address, the stream's upstream override host is set
//     (setUpstreamOverrideHost), non-strict.
//   - EnvelopeSessionStateFactory::parseAddress (source/extensions/http/stateful_session/envelope/
//     envelope.cc): the header's first value is split on ';' (empty parts skipped); the first part
//     is base64(host address), the first later part starting with "UV:" is base64(the upstream's
//     original value). When the UV part is missing or does not decode (Envoy's Base64::decode:
//     standard alphabet, padded, strict, "" on any error) the header is left as it is and there is
//     no override. Otherwise the header is set to the decoded original value (every value of it
//     replaced), and the decoded address, if not empty, is the override host.
//   - StatefulSession::encodeHeaders and SessionStateImpl::onUpdate: when the stream has an
//     upstream host and the response has the header exactly once, its value becomes
//     base64(host address) + ";UV:" + base64(value). Absent or repeated, it is left alone.
//   - ClusterEntry::chooseHost / HostUtility::selectOverrideHost (source/common/upstream/
//     host_utility.cc): the override host is used when the cluster has a host with that address
//     (any priority) whose health status is in override_host_status (default UNKNOWN, HEALTHY,
//     DEGRADED); otherwise the load balancer picks as usual.

import (
	"encoding/base64"
	"strings"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// upstreamValueFlag marks the part of an envelope holding the upstream's value.
const upstreamValueFlag = "UV:"

// sessionDecode is the stateful session filter's decodeHeaders: it restores the session header
// the client sent and records the host the envelope names.
func (st *stream) sessionDecode() {
	f := st.lis.HCM.StatefulSession
	if f == nil {
		return
	}
	cfg := f.Config
	if pr := st.sessionPerRoute(f.Name); pr != nil {
		if pr.Disabled {
			return
		}
		cfg = pr.Config
	}
	if cfg.EnvelopeHeader == "" {
		return
	}
	st.sessionHeader = cfg.EnvelopeHeader
	st.overrideHost = envelopeOpen(st.req, cfg.EnvelopeHeader)
}

// sessionPerRoute is the most specific StatefulSessionPerRoute of the stream's route.
func (st *stream) sessionPerRoute(name string) *xdsconf.StatefulSessionPerRoute {
	levels := st.perFilterLevels()
	for i := len(levels) - 1; i >= 0; i-- {
		if pr := levels[i].StatefulSession[name]; pr != nil {
			return pr
		}
	}
	return nil
}

// sessionEncode is the stateful session filter's encodeHeaders: the response's session header is
// wrapped with the upstream host that answered.
func (st *stream) sessionEncode(h *headers.Map) {
	if st.sessionHeader == "" || st.upstream == "" {
		return
	}
	if v := h.Values(st.sessionHeader); len(v) == 1 {
		h.Del(st.sessionHeader)
		h.Add(st.sessionHeader, envelopeSeal(st.upstream, v[0]))
	}
}

// sessionEncodes reports whether the stateful session filter's encodeHeaders runs at this point of
// the encoder path: afterExtProc is the point after ext_proc's response processing, where a filter
// placed before ext_proc in the chain runs (encoders run in reverse); before it runs one placed
// after ext_proc.
func (st *stream) sessionEncodes(afterExtProc bool) bool {
	f := st.lis.HCM.StatefulSession
	return f != nil && f.BeforeExtProc == afterExtProc
}

// sessionBeforeExtProc reports whether the stateful session filter decodes before ext_proc.
func (st *stream) sessionBeforeExtProc() bool {
	f := st.lis.HCM.StatefulSession
	return f != nil && f.BeforeExtProc
}

// envelopeSeal is the envelope of an upstream's session value: base64(host);UV:base64(value).
func envelopeSeal(host, value string) string {
	return base64.StdEncoding.EncodeToString([]byte(host)) + ";" + upstreamValueFlag + base64.StdEncoding.EncodeToString([]byte(value))
}

// envelopeOpen reads the envelope in header name of h as EnvelopeSessionStateFactory::parseAddress
// does: when it has a valid UV part the header is set to the original value, and the host it
// names is returned ("" for none).
func envelopeOpen(h *headers.Map, name string) string {
	v, ok := h.Get(name)
	if !ok {
		return ""
	}
	var parts []string
	for p := range strings.SplitSeq(v, ";") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	host := envoyBase64Decode(parts[0])
	uv := ""
	for _, p := range parts[1:] {
		if rest, ok := strings.CutPrefix(p, upstreamValueFlag); ok {
			uv = rest
			break
		}
	}
	orig := envoyBase64Decode(uv)
	if orig == "" {
		return ""
	}
	h.Del(name) // Envoy's setReferenceKey: every value removed, the new one appended
	h.Add(name, orig)
	return host
}

// envoyBase64Decode is Envoy's Base64::decode: the standard padded alphabet, a length that is a
// multiple of 4, no stray bits; "" for any invalid input.
func envoyBase64Decode(s string) string {
	if len(s)%4 != 0 || strings.ContainsAny(s, "\r\n") { // Go's decoder skips CR and LF; Envoy's does not
		return ""
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}

// overrideEndpoint is the endpoint the override host names, if the cluster has it with a health
// status Envoy's default override_host_status accepts.
func overrideEndpoint(eps []endpoint, host string) (endpoint, bool) {
	if host == "" {
		return endpoint{}, false
	}
	for _, e := range eps {
		if e.Addr() == host && e.Healthy {
			return e, true
		}
	}
	return endpoint{}, false
}
