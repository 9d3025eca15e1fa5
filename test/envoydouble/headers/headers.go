// Package headers is the header map of the envoydouble: an ordered multi-map with lower-case keys
// that also holds the HTTP/2-style pseudo-headers (:method, :path, :authority, :scheme, :status),
// as Envoy's HeaderMap does.
package headers

import "strings"

// KV is one header entry.
type KV struct {
	// Key is the header's name in lower case (":path" for a pseudo-header).
	Key string
	// Value is one value of the header.
	Value string
}

// Map is an ordered header map. Keys are stored lower-case. The zero value is empty and usable.
type Map struct {
	kv []KV
}

// Get returns the first value of key.
func (m *Map) Get(key string) (string, bool) {
	key = strings.ToLower(key)
	for _, e := range m.kv {
		if e.Key == key {
			return e.Value, true
		}
	}
	return "", false
}

// Value returns the first value of key, or "".
func (m *Map) Value(key string) string {
	v, _ := m.Get(key)
	return v
}

// Values returns every value of key in order.
func (m *Map) Values(key string) []string {
	key = strings.ToLower(key)
	var out []string
	for _, e := range m.kv {
		if e.Key == key {
			out = append(out, e.Value)
		}
	}
	return out
}

// Joined returns every value of key joined with ",", as Envoy's
// HeaderUtility::getAllOfHeaderAsString does for header matching.
func (m *Map) Joined(key string) (string, bool) {
	vs := m.Values(key)
	if len(vs) == 0 {
		return "", false
	}
	return strings.Join(vs, ","), true
}

// Has reports whether key is present.
func (m *Map) Has(key string) bool {
	_, ok := m.Get(key)
	return ok
}

// Add appends an entry.
func (m *Map) Add(key, value string) {
	m.kv = append(m.kv, KV{Key: strings.ToLower(key), Value: value})
}

// Set replaces every entry of key by one entry with value, at the place of the first one.
func (m *Map) Set(key, value string) {
	key = strings.ToLower(key)
	out := m.kv[:0]
	done := false
	for _, e := range m.kv {
		if e.Key != key {
			out = append(out, e)
			continue
		}
		if !done {
			out = append(out, KV{Key: key, Value: value})
			done = true
		}
	}
	m.kv = out
	if !done {
		m.kv = append(m.kv, KV{Key: key, Value: value})
	}
}

// Del removes every entry of key.
func (m *Map) Del(key string) {
	key = strings.ToLower(key)
	out := m.kv[:0]
	for _, e := range m.kv {
		if e.Key != key {
			out = append(out, e)
		}
	}
	m.kv = out
}

// All returns the entries in order. The slice must not be modified.
func (m *Map) All() []KV { return m.kv }

// Clone returns an independent copy.
func (m *Map) Clone() *Map {
	return &Map{kv: append([]KV(nil), m.kv...)}
}

// Len is the number of entries.
func (m *Map) Len() int { return len(m.kv) }
