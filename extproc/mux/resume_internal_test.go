package mux

import (
	"slices"
	"strings"
	"testing"
)

// TestEventID: an event id the mux gives decodes to the targets and ids it was made of (a
// target's id may hold ":" and anything but a line break), the targets without an id left out.
func TestEventID(t *testing.T) {
	for _, c := range []struct {
		kind       byte
		names, ids []string
		wantNames  []string
	}{
		{callStream, []string{"a"}, []string{"ZSBATQ_1"}, []string{"a"}},
		{getStream, []string{"a", "b", "c"}, []string{"_4", "", "urn:x:1 2"}, []string{"a", "c"}},
	} {
		b, _ := appendEventID([]byte("x"), nil, c.kind, c.names, c.ids)
		id, ok := strings.CutPrefix(string(b), "xid: ")
		id, nl := strings.CutSuffix(id, "\n")
		if !ok || !nl || !strings.HasPrefix(id, EventIDPrefix) {
			t.Fatalf("appendEventID(%q, %q): %q, want x then an id line", c.names, c.ids, b)
		}
		p, err := decodeEventID(id)
		if err != nil {
			t.Fatalf("decodeEventID(%q): %v", id, err)
		}
		if p.kind != c.kind || !slices.Equal(p.names, c.wantNames) {
			t.Errorf("decodeEventID(%q): kind %c targets %q, want %c %q", id, p.kind, p.names, c.kind, c.wantNames)
		}
		for i, name := range c.names {
			if got := p.id(name); got != c.ids[i] {
				t.Errorf("decodeEventID(%q): %s's id %q, want %q", id, name, got, c.ids[i])
			}
		}
	}
	if b, _ := appendEventID(nil, nil, getStream, []string{"a"}, []string{""}); len(b) != 0 {
		t.Errorf("appendEventID without any target id: %q, want nothing", b)
	}
}
