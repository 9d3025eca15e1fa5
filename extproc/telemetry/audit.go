package telemetry

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Arguments renders r's tool arguments for the audit line and Envoy's metadata: the values of the
// keys that Options.RedactKeys match, and of such keys in URL queries, are replaced by
// "[REDACTED]" (redact.go), and the text is cut to
// Options.MaxArgumentBytes (truncated then reports true and the text is no longer JSON). The
// rendering is kept in r, so the metadata and the audit line pay for it once; r.Arguments must
// not change after the first call.
func (t *Telemetry) Arguments(r *Record) (text []byte, truncated bool) {
	if !r.argsDone {
		r.args, r.argsTruncated, r.argsDone = t.renderArguments(r.Arguments), false, true
		if len(r.args) > t.maxArgs {
			cut := t.maxArgs
			for cut > 0 && !utf8.RuneStart(r.args[cut]) {
				cut--
			}
			r.args, r.argsTruncated = r.args[:cut], true
		}
	}
	return r.args, r.argsTruncated
}

// Detach renders r's arguments now and copies them and r's id out of the message they were read
// from, so that a record kept past its request holds no part of the request body (a legacy SSE
// request waiting for its answer would otherwise keep the whole body). It returns the bytes the
// record then holds in those two fields.
func (t *Telemetry) Detach(r *Record) int {
	t.Arguments(r)
	r.args, r.Arguments, r.ID = bytes.Clone(r.args), nil, bytes.Clone(r.ID)
	return len(r.args) + len(r.ID)
}

// appendRecord encodes r as one JSON object. Empty fields are left out.
func appendRecord(b []byte, r *Record, t *Telemetry) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "gateway", r.Gateway)
	b = appendField(b, "route", r.Route)
	b = appendField(b, "backend", r.Backend)
	b = appendField(b, "target", r.Target)
	b = appendField(b, "session", r.Session)
	b = appendField(b, "subject", r.Subject)
	if len(r.Claims) > 0 {
		start := len(b)
		b = append(b, `,"claims":`...)
		n := len(r.Claims)
		if r.ClaimNames == nil {
			b = appendClaims(b, r.Claims)
		} else {
			b, n = appendClaimsOf(b, r.Claims, r.ClaimNames)
		}
		if n == 0 {
			// The token has none of the claims the rules read.
			b = b[:start]
		}
	}
	b = appendField(b, "authn", r.Authn)
	b = appendField(b, "method", r.Method)
	b = appendField(b, "tool", r.Tool)
	b = appendField(b, "prompt", r.Prompt)
	b = appendField(b, "resource", t.resourceURI(r.Resource))
	if args, truncated := t.Arguments(r); args != nil {
		b = append(b, `,"arguments":`...)
		if truncated {
			b = appendString(b, string(args))
			b = append(b, `,"arguments_truncated":true`...)
		} else {
			b = appendJSON(b, args)
		}
	}
	if r.ID != nil {
		b = append(b, `,"jsonrpc_id":`...)
		b = appendJSON(b, r.ID)
	}
	b = appendField(b, "decision", r.Decision)
	b = appendField(b, "rule", r.Rule)
	if r.HasError {
		b = append(b, `,"jsonrpc_error":`...)
		b = strconv.AppendInt(b, int64(r.ErrorCode), 10)
	}
	if r.HTTPStatus != 0 {
		b = append(b, `,"http_status":`...)
		b = strconv.AppendInt(b, int64(r.HTTPStatus), 10)
	}
	b = appendField(b, "outcome", r.Outcome)
	b = append(b, `,"latency_ms":`...)
	b = appendMillis(b, r.Latency.Microseconds())
	return append(b, '}')
}

// appendMillis appends us microseconds as milliseconds: the shortest decimal of us/1000, which is
// what strconv.AppendFloat(b, float64(us)/1000, 'f', -1, 64) writes, without its search for the
// shortest digits. Under 10^12 µs (11 days) the quotient is the double nearest us/1000, whose
// spacing is far below 0.001: the exact decimal, trailing zeros dropped, is the shortest that
// reads as it. Longer latencies go through AppendFloat.
func appendMillis(b []byte, us int64) []byte {
	const exact = 1e12
	if us <= -exact || us >= exact {
		return strconv.AppendFloat(b, float64(us)/1000, 'f', -1, 64)
	}
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	if frac == 0 {
		return b
	}
	digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 3
	for digits[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, digits[:n]...)
}

// appendClaims encodes claims as a JSON object with sorted keys.
func appendClaims(b []byte, claims map[string]any) []byte {
	b, _ = appendClaimsOf(b, claims, slices.Sorted(maps.Keys(claims)))
	return b
}

// appendClaimsOf encodes as a JSON object the claims of names (sorted) that claims holds, and
// returns how many it holds. Scalar values (what rules read) are encoded directly, others
// through encoding/json.
func appendClaimsOf(b []byte, claims map[string]any, names []string) ([]byte, int) {
	b = append(b, '{')
	n := 0
	for _, k := range names {
		v, ok := claims[k]
		if !ok {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, k)
		b = append(b, ':')
		switch v := v.(type) {
		case string:
			b = appendString(b, v)
		case bool:
			b = strconv.AppendBool(b, v)
		case float64:
			b = strconv.AppendFloat(b, v, 'f', -1, 64)
		case nil:
			b = append(b, "null"...)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				j = []byte("null")
			}
			b = appendJSON(b, j)
		}
	}
	return append(b, '}'), n
}

func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

const hexDigits = "0123456789abcdef"

// appendEscape appends the JSON escape \uXXXX of r (at most U+FFFF).
func appendEscape(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// appendEscaped appends s[start:i], the text before a character to escape, then the escape of
// that character r.
func appendEscaped[T string | []byte](b []byte, s T, start, i int, r rune) []byte {
	return appendEscape(append(b, s[start:i]...), r)
}

// appendNonASCII appends, for the character r of size bytes at s[i] (outside ASCII), the text
// from start before it and its escape when it must be escaped (escapedRune), and returns b and
// where the text still to copy starts. A run of invalid bytes gets one U+FFFD, as ValidUTF8
// writes it for the spans and the access log: *runEnd is the end of the last invalid byte.
func appendNonASCII[T string | []byte](b []byte, s T, start, i int, r rune, size int, runEnd *int) ([]byte, int) {
	e, ok := escapedRune(r, size)
	if !ok {
		return b, start
	}
	if e == utf8.RuneError {
		continued := i == *runEnd
		*runEnd = i + size
		if continued {
			return b, i + size
		}
	}
	return appendEscaped(b, s, start, i, e), i + size
}

// escapedRune returns what a character outside ASCII is written as in an audit line, and whether
// it must be escaped: invalid UTF-8 becomes U+FFFD, and the characters that some readers of a log
// take for a line end (U+0085, U+2028, U+2029: Python's str.splitlines, JavaScript) are escaped.
// An audit line is one line for every reader.
func escapedRune(r rune, size int) (rune, bool) {
	switch {
	case r == utf8.RuneError && size == 1:
		return utf8.RuneError, true
	case r == '\u0085', r == '\u2028', r == '\u2029':
		return r, true
	}
	return r, false
}

// appendString encodes s as a JSON string; invalid UTF-8 becomes U+FFFD (one per run of invalid
// bytes), and control characters and line separators are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start, runEnd := 0, -1
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = appendEscape(b, rune(c))
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		b, start = appendNonASCII(b, s, start, i, r, size, &runEnd)
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSON appends the JSON value raw (the client's arguments or id, which the gateway's
// scanner found to be JSON) compacted, as one line: white space outside strings is dropped; in
// strings, control characters are escaped and other characters as appendString writes them
// (invalid UTF-8 as U+FFFD, one per run, line separators escaped). Escapes already in raw are kept. The value
// means what raw means to a JSON reader, and it can neither end the audit line nor start another.
// It allocates nothing beyond b's growth.
func appendJSON(b, raw []byte) []byte {
	inString := false
	start, runEnd := 0, -1
	for i := 0; i < len(raw); {
		c := raw[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(raw[i:])
			b, start = appendNonASCII(b, raw, start, i, r, size, &runEnd)
			i += size
			continue
		}
		switch {
		case c == '"':
			inString = !inString
		case inString && c == '\\' && i+1 < len(raw) && raw[i+1] >= 0x20 && raw[i+1] < utf8.RuneSelf:
			// An escape: its second byte is not the end of the string. (A \u escape's hex
			// digits are plain characters.)
			i += 2
			continue
		case c < 0x20 || (c == ' ' && !inString):
			// White space outside strings goes; a control character in a string (invalid JSON,
			// but never a line break here) is escaped.
			if inString {
				b = appendEscaped(b, raw, start, i, rune(c))
			} else {
				b = append(b, raw[start:i]...)
			}
			i++
			start = i
			continue
		}
		i++
	}
	return append(b, raw[start:]...)
}
