package extprocfilter

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// mutate applies a HeaderMutation as Envoy's mutation_utils.cc does: removals first, then sets.
//   - Only header.raw_value is read; setting both value and raw_value is an error (500).
//   - Only the deprecated `append` is honoured (default false = overwrite); append_action is not.
//   - mutation_rules (default: no :method, :authority, :scheme, host, x-envoy-*) silently drop
//     blocked changes, unless disallow_is_error.
//   - Pseudo-headers and host cannot be removed; a content-length set is ignored when noCL (the
//     body mode is one where Envoy removes content-length: applyHeaderMutations'
//     remove_content_length).
//   - Invalid names or values are an error (500).
//
// replace is CONTINUE_AND_REPLACE, which may change :method.
func (s *Stream) mutate(h *headers.Map, m *extprocsvc.HeaderMutation, replace, noCL bool) *Failure {
	if m == nil {
		return nil
	}
	// A rejected mutation is answered with status_on_error whatever failure_mode_allow says, the
	// error message of mutation_utils.cc as details.
	bad := func(msg string) *Failure {
		return &Failure{Status: s.cfg.StatusOnError, Details: strings.Join(strings.Fields(msg), "_"), Fatal: true}
	}
	for _, k := range m.GetRemoveHeaders() {
		key := strings.ToLower(k)
		if !validName(key) {
			return bad("Invalid character in remove_headers mutation.")
		}
		if strings.HasPrefix(key, ":") || key == "host" {
			continue
		}
		if !s.allowed(key, false) {
			if s.cfg.Rules.DisallowIsError {
				return bad("Invalid attempt to remove " + key)
			}
			continue
		}
		h.Del(key)
	}
	for _, o := range m.GetSetHeaders() {
		hv := o.GetHeader()
		key := strings.ToLower(hv.GetKey())
		if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
			return bad("Only one of value or raw_value in the HeaderValue message should be set.")
		}
		value := string(hv.GetRawValue())
		if !validName(key) || !validValue(value) {
			return bad("Invalid character in set_headers mutation.")
		}
		if key == "content-length" && noCL {
			continue
		}
		if !s.allowed(key, replace && key == ":method") {
			if s.cfg.Rules.DisallowIsError {
				return bad("Invalid attempt to modify " + key)
			}
			continue
		}
		if key == ":status" {
			if c, err := strconv.Atoi(value); err != nil || c < 100 || c > 999 {
				return bad("Invalid attempt to modify " + key)
			}
		}
		if appendValue(o) {
			h.Add(key, value)
		} else {
			h.Set(key, value)
		}
	}
	return nil
}

func appendValue(o *corev3.HeaderValueOption) bool { return o.GetAppend().GetValue() }

// allowed is Envoy's mutation_rules Checker::isAllowed.
func (s *Stream) allowed(key string, allowMethod bool) bool {
	r := s.cfg.Rules
	switch {
	case r.DisallowAll:
		return false
	case r.DisallowExpr != nil && r.DisallowExpr.MatchString(key):
		return false
	case r.AllowExpr != nil && r.AllowExpr.MatchString(key):
		return true
	}
	routing := key == ":method" || key == ":authority" || key == ":scheme" || key == "host"
	if routing && !r.AllowAllRouting && !(allowMethod && key == ":method") {
		return false
	}
	if strings.HasPrefix(key, "x-envoy") && !r.AllowEnvoy {
		return false
	}
	if r.DisallowSystem && (strings.HasPrefix(key, ":") || key == "host") {
		return false
	}
	return true
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range []byte(k) {
		if c == ':' && i == 0 {
			continue
		}
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

func validValue(v string) bool {
	return strings.IndexByte(v, 0) < 0 && strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0
}

// headerMap builds the HeaderMap sent to ext_proc: lower-case keys, raw_value only, filtered by
// forward_rules (allowed_headers then disallowed_headers).
func (s *Stream) headerMap(h *headers.Map) *corev3.HeaderMap {
	out := &corev3.HeaderMap{}
	for _, e := range h.All() {
		if len(s.cfg.ForwardAllowed) > 0 && !anyMatch(s.cfg.ForwardAllowed, e.Key) {
			continue
		}
		if anyMatch(s.cfg.ForwardDisallowed, e.Key) {
			continue
		}
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: e.Key, RawValue: []byte(e.Value)})
	}
	return out
}

func anyMatch(ms []*xdsconf.StringMatch, k string) bool {
	for _, m := range ms {
		if m.Match(k) {
			return true
		}
	}
	return false
}
