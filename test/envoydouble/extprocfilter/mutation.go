package extprocfilter

//lint:file-ignore SA1019 Envoy still applies the deprecated HeaderValueOption.append; the double reads it as Envoy does

import (
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// Envoy's header map limits (HeaderMapImpl maxHeadersKb and maxHeadersCount): the defaults of
// max_request_headers_kb and common_http_protocol_options.max_headers_count, and of the cluster's
// max_response_headers_kb / max_headers_count, which the double refuses to configure (the HCM's
// max_request_headers_kb is ignored: mcpgate leaves it unset).
const (
	maxHeadersCount = 100
	maxHeadersBytes = 60 << 10
)

// mutate applies a HeaderMutation as Envoy's MutationUtils::applyHeaderMutations
// (mutation_utils.cc) does:
//   - more than max_headers_count removals or sets is an error (responseHeaderSizeCheck);
//   - removals first: an invalid name is an error; pseudo-headers and host are never removed;
//     the rest per mutation_rules (Checker::check);
//   - then sets, skipping an option without a header; a content-length is skipped when noCL (the
//     body mode is one where Envoy removes content-length: remove_content_length), before any
//     other check; setting both value and raw_value is an error; only raw_value is read; an
//     invalid name (HeaderUtility::headerNameIsValid) or value (headerValueIsValid) is an error;
//     only the deprecated `append` is honoured (default false = overwrite; append_action is not);
//     mutation_rules decide (allowed), replace (CONTINUE_AND_REPLACE) allowing :method;
//   - a header map over the count or size limit afterwards is an error
//     (headerMutationResultCheck).
//
// A refused mutation is dropped, or an error when disallow_is_error. An error is answered with
// status_on_error (handleErrorResponse), what was applied before it staying applied.
func (s *Stream) mutate(h *headers.Map, m *extprocsvc.HeaderMutation, replace, noCL bool) *Failure {
	if m == nil {
		return nil
	}
	// A rejected mutation is answered with status_on_error whatever failure_mode_allow says, the
	// error message of mutation_utils.cc as details.
	bad := func(msg string) *Failure {
		return &Failure{Status: s.cfg.StatusOnError, Details: ResponseCodeDetails(msg), Fatal: true}
	}
	if nr, ns := len(m.GetRemoveHeaders()), len(m.GetSetHeaders()); nr > maxHeadersCount || ns > maxHeadersCount {
		return bad(fmt.Sprintf("Header mutation remove header count %d or set header count %d exceed the HCM header countlimit %d",
			nr, ns, maxHeadersCount))
	}
	for _, k := range m.GetRemoveHeaders() {
		if !validName(k) {
			return bad("Invalid character in remove_headers mutation.")
		}
		key := strings.ToLower(k)
		if !s.allowed(opRemove, key, "") {
			if s.cfg.Rules.DisallowIsError {
				return bad("Invalid attempt to remove " + key)
			}
			continue
		}
		h.Del(key)
	}
	for _, o := range m.GetSetHeaders() {
		hv := o.GetHeader()
		if hv == nil {
			continue
		}
		if noCL && strings.EqualFold(hv.GetKey(), "content-length") {
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
			return bad("Only one of value or raw_value in the HeaderValue message should be set.")
		}
		value := string(hv.GetRawValue())
		if !validName(hv.GetKey()) || !validValue(value) {
			return bad("Invalid character in set_headers mutation.")
		}
		key := strings.ToLower(hv.GetKey())
		op := opSet
		if appendValue(o) && h.Has(key) {
			op = opAppend
		}
		if !(replace && key == ":method") && !s.allowed(op, key, value) {
			if s.cfg.Rules.DisallowIsError {
				return bad("Invalid attempt to modify " + key)
			}
			continue
		}
		if appendValue(o) {
			h.Add(key, value)
		} else {
			h.Set(key, value)
		}
	}
	if size := headerBytes(h); size > maxHeadersBytes || h.Len() > maxHeadersCount {
		return bad(fmt.Sprintf("Header mutation causes end result header count %d or header size %d bytes, exceeding the count limit %d or the size limit %d kilobytes",
			h.Len(), size, maxHeadersCount, maxHeadersBytes>>10))
	}
	return nil
}

// headerBytes is HeaderMap::byteSize: the names and values of every entry.
func headerBytes(h *headers.Map) int {
	n := 0
	for _, e := range h.All() {
		n += len(e.Key) + len(e.Value)
	}
	return n
}

func appendValue(o *corev3.HeaderValueOption) bool { return o.GetAppend().GetValue() }

type mutationOp int

const (
	opSet mutationOp = iota
	opAppend
	opRemove
)

// allowed is Envoy's mutation_rules Checker::check (mutation_rules.cc): isAllowed, and for a set
// or append isValidValue.
func (s *Stream) allowed(op mutationOp, key, value string) bool {
	r := s.cfg.Rules
	system := strings.HasPrefix(key, ":")
	switch {
	case op == opRemove && (system || key == "host"):
		return false // HeaderUtility::isModifiableHeader: never removed
	case r.DisallowExpr != nil && r.DisallowExpr.MatchString(key):
		return false
	case r.AllowExpr != nil && r.AllowExpr.MatchString(key):
	case r.DisallowAll:
		return false
	case !r.AllowAllRouting && (key == ":authority" || key == "host" || key == ":method" || key == ":scheme"):
		return false
	case system && (op == opAppend || r.DisallowSystem):
		return false // a system header has one value
	case !r.AllowEnvoy && strings.HasPrefix(key, "x-envoy"):
		return false
	}
	return op == opRemove || validRuleValue(key, value)
}

// validRuleValue is Checker::isValidValue: values Envoy would misbehave with are refused.
func validRuleValue(key, value string) bool {
	switch key {
	case ":authority", "host":
		return value != "" && strings.Trim(value, authorityChars) == "" // HeaderUtility::authorityIsValid
	case ":scheme":
		return strings.EqualFold(value, "http") || strings.EqualFold(value, "https") // Utility::schemeIsValid
	case ":status":
		c, err := strconv.ParseUint(value, 10, 32)
		return err == nil && c >= 200
	}
	return true
}

// authorityChars are oghttp2's kValidAuthorityChars.
const authorityChars = "!$&'()*+,-./0123456789:;=@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~%"

// validName is HeaderUtility::headerNameIsValid: an RFC 7230 token (letters of either case), a
// pseudo-header's after its ':'.
func validName(k string) bool {
	k = strings.TrimPrefix(k, ":")
	if k == "" {
		return false
	}
	for _, c := range []byte(k) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validValue is HeaderUtility::headerValueIsValid (oghttp2's IsValidHeaderValue with obs-text
// allowed): tab, space, visible ASCII and bytes from 0x80.
func validValue(v string) bool {
	for _, c := range []byte(v) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
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
