package authz

// HeaderMap is a Headers backed by a map of lower-case names.
type HeaderMap map[string]string

// Get implements Headers.
func (h HeaderMap) Get(name string) (string, bool) {
	v, ok := h[name]
	return v, ok
}

// Range implements Headers.
func (h HeaderMap) Range(f func(name, value string) bool) {
	for k, v := range h {
		if !f(k, v) {
			return
		}
	}
}

// Len implements Headers.
func (h HeaderMap) Len() int { return len(h) }
