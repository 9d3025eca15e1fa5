package telemetry

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/contract"
)

// Redaction of tool arguments (Options.RedactKeys). A key is compared folded: lower case, without
// the separators '_', '-' and '.', so that "X-Api-Key", "api_key" and "apiKey" are one. A key of
// the arguments is redacted when its folded form ends with a folded redaction key: credentials
// are named by the kind of secret last ("db_password", "github_token", "headers.X-Api-Key",
// "privateKey"), while names that only hold one ("max_tokens", "token_count", "keyword") are not.
// Its value, whatever it is (an object too), becomes "[REDACTED]". In a string value, the values
// of a URL query's keys that match the same way ("?access_token=...") and the user:password of a
// URL's userinfo are replaced as well, and so is the "value" of an object whose "name" is such a
// key (a header given as {"name":"Cookie","value":"..."}).

// redacted replaces a redacted value.
const redacted = "[REDACTED]"

// foldKey returns k folded (contract.AppendFolded): lower case, without '_', '-' and '.'.
func foldKey(k string) string {
	return string(contract.AppendFolded(nil, k))
}

// redactedKey reports whether the values of key k are redacted: its folded form ends with one of
// the redaction keys.
func (t *Telemetry) redactedKey(k string) bool {
	var buf [64]byte
	f := contract.AppendFolded(buf[:0], k)
	for _, r := range t.redact {
		if bytes.HasSuffix(f, r) {
			return true
		}
	}
	return false
}

// renderArguments returns raw redacted.
func (t *Telemetry) renderArguments(raw json.RawMessage) []byte {
	if len(raw) == 0 || t.redact == nil || !t.mayNameRedactedKey(raw) {
		return raw
	}
	return t.redactJSON(raw)
}

// mayNameRedactedKey reports whether raw can hold something to redact: a redaction key in its
// folded text (where %XX escapes are decoded too, as a query's keys are) where a key can end
// (endsAKey), a \u escape (which could spell one), or a URL with userinfo. Most arguments hold none, and are kept as they are
// without being decoded. The folding notes the pairs of adjacent bytes it writes, so that a key
// is searched for only when its pairs are all there (rarely, for a key that is not).
func (t *Telemetry) mayNameRedactedKey(raw []byte) bool {
	if bytes.Contains(raw, []byte(`\u`)) {
		return true
	}
	if bytes.IndexByte(raw, '@') >= 0 && bytes.Contains(raw, []byte("://")) {
		return true
	}
	// Arguments of a few hundred ASCII bytes, the usual, are folded on the stack.
	var buf [512]byte
	var seen pairSet
	folded, ok := foldText(buf[:0], raw, true, &seen)
	if !ok {
		seen = pairSet{}
		folded, _ = foldText(make([]byte, 0, len(raw)), bytes.ToLower(raw), false, &seen)
	}
	for i := range t.redactKeys {
		if k := &t.redactKeys[i]; seen.hasAll(k.pairs) && endsAKey(folded, k.text) {
			return true
		}
	}
	return false
}

// endsAKey reports whether folded holds k where a key can end: before the '"' that closes a JSON
// key or the '=' after a query's key ("maxtokens" holds "token", but no key that ends with it).
func endsAKey(folded, k []byte) bool {
	for {
		i := bytes.Index(folded, k)
		if i < 0 {
			return false
		}
		if end := i + len(k); end < len(folded) && (folded[end] == '"' || folded[end] == '=') {
			return true
		}
		folded = folded[i+1:]
	}
}

// precheckKey is a folded redaction key for mayNameRedactedKey, with the pairs of adjacent bytes
// that folded text holds where a key ends with it (the last with the '"' or '=' after it).
type precheckKey struct {
	text  []byte
	pairs []uint16
}

func newPrecheckKey(k string) precheckKey {
	pk := precheckKey{text: []byte(k)}
	for i := 1; i < len(k); i++ {
		if p := pairOf(k[i-1], k[i]); !slices.Contains(pk.pairs, p) {
			pk.pairs = append(pk.pairs, p)
		}
	}
	if len(k) > 0 {
		pk.pairs = append(pk.pairs, pairOf(k[len(k)-1], '"')) // '"' and '=' are one class
	}
	return pk
}

// byteClass numbers a folded byte for pairSet: a letter or digit its own, any other byte one
// class (the set then says more than there is, never less).
var byteClass = func() (c [256]uint8) {
	for i := range c {
		switch {
		case 'a' <= i && i <= 'z':
			c[i] = uint8(i - 'a')
		case '0' <= i && i <= '9':
			c[i] = uint8(26 + i - '0')
		default:
			c[i] = 36
		}
	}
	return c
}()

const byteClasses = 37

func pairOf(a, b byte) uint16 { return uint16(byteClass[a])*byteClasses + uint16(byteClass[b]) }

// pairSet is a set of pairs of byte classes.
type pairSet [(byteClasses*byteClasses + 63) / 64]uint64

func (s *pairSet) hasAll(pairs []uint16) bool {
	for _, p := range pairs {
		if s[p/64]&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}

// foldText appends src to dst folded as keys are (contract.AppendFolded), with each %XX escape
// decoded first, and adds to seen the pairs of adjacent bytes it appends. With asciiOnly, it
// fails (ok false) on a byte that is not ASCII or when src does not fit dst's capacity, which
// append would grow.
func foldText(dst, src []byte, asciiOnly bool, seen *pairSet) (folded []byte, ok bool) {
	if asciiOnly && len(src) > cap(dst)-len(dst) {
		return nil, false
	}
	prev := -1
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '%' && i+2 < len(src) && ishex(src[i+1]) && ishex(src[i+2]) {
			c = unhex(src[i+1])<<4 | unhex(src[i+2])
			i += 2
		}
		switch {
		case c >= utf8.RuneSelf && asciiOnly:
			return nil, false
		case c == '_' || c == '-' || c == '.':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		cls := int(byteClass[c])
		if prev >= 0 {
			p := prev*byteClasses + cls
			seen[p/64] |= 1 << (p % 64)
		}
		prev = cls
	}
	return dst, true
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func (t *Telemetry) redactJSON(raw json.RawMessage) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		// Not JSON: nothing can be found by key, so keep none of it.
		return json.RawMessage(`"` + redacted + `"`)
	}
	v, changed := t.redactValue(v)
	if !changed {
		return raw
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // a URL's & stays readable
	if err := enc.Encode(v); err != nil {
		return json.RawMessage(`"` + redacted + `"`)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

// redactValue returns v with the values of redacted keys replaced (in place in objects and
// arrays) and the credentials of the URLs in its strings hidden, and whether it changed any.
func (t *Telemetry) redactValue(v any) (any, bool) {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if t.redactedKey(k) {
				x[k], changed = redacted, true
			} else if nv, ok := t.redactValue(val); ok {
				x[k], changed = nv, true
			}
		}
		// A header or parameter given as a pair, {"name":"Cookie","value":"..."} (HAR, fetch
		// tools' header lists): its value is the named key's.
		if name, ok := x["name"].(string); ok && t.redactedKey(name) {
			if v, has := x["value"]; has && v != redacted {
				x["value"], changed = redacted, true
			}
		}
	case []any:
		for i, val := range x {
			if nv, ok := t.redactValue(val); ok {
				x[i], changed = nv, true
			}
		}
	case string:
		if s, ok := t.redactURLCredentials(x); ok {
			return s, true
		}
	}
	return v, changed
}

// redactURLCredentials returns s with the user:password of a URL's userinfo ("scheme://user:password@host")
// and the values of the redacted keys of a query (after the first '?', up to '#') replaced, and
// whether it replaced any. Query keys are compared %-decoded, as a server reads them.
func (t *Telemetry) redactURLCredentials(s string) (string, bool) {
	changed := false
	if i := strings.Index(s, "://"); i >= 0 {
		authority := s[i+3:]
		if end := strings.IndexAny(authority, "/?#"); end >= 0 {
			authority = authority[:end]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 && strings.IndexByte(authority[:at], ':') >= 0 {
			s, changed = s[:i+3]+redacted+s[i+3+at:], true
		}
	}
	q := strings.IndexByte(s, '?')
	if q < 0 {
		return s, changed
	}
	end := len(s)
	if h := strings.IndexByte(s[q:], '#'); h >= 0 {
		end = q + h
	}
	var b strings.Builder
	done := 0 // s[:done] is in b
	for pos := q + 1; pos < end; {
		next := end
		if amp := strings.IndexByte(s[pos:end], '&'); amp >= 0 {
			next = pos + amp
		}
		if eq := strings.IndexByte(s[pos:next], '='); eq >= 0 {
			key := s[pos : pos+eq]
			if k, err := url.QueryUnescape(key); err == nil {
				key = k
			}
			if value := pos + eq + 1; t.redactedKey(key) && s[value:next] != redacted {
				b.WriteString(s[done:value])
				b.WriteString(redacted)
				done = next
			}
		}
		pos = next + 1
	}
	if done == 0 {
		return s, changed
	}
	b.WriteString(s[done:])
	return b.String(), true
}
