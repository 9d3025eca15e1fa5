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

// FuzzEventID: any Last-Event-ID a client sends decodes or is refused, never a panic; one that
// decodes is encoded again as the same position (so the ids of a resumed stream continue it).
func FuzzEventID(f *testing.F) {
	// "g\na:urn:x:a", "g\na:urn:x:a\nb:urn:x:b", "c\na:1" and two that do not decode.
	for _, v := range []string{"m1.ZwphOnVybjp4OmE", "m1.ZwphOnVybjp4OmEKYjp1cm46eDpi", "m1.YwphOjE", "m1.Yw", "m1.!"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		p, err := decodeEventID(v)
		if err != nil {
			return
		}
		b, _ := appendEventID(nil, nil, p.kind, p.names, p.ids)
		id := strings.TrimSuffix(strings.TrimPrefix(string(b), "id: "), "\n")
		q, err := decodeEventID(id)
		if err != nil {
			t.Fatalf("decodeEventID(%q) = %+v, encoded again as %q, which does not decode: %v", v, p, id, err)
		}
		if q.kind != p.kind || !slices.Equal(q.names, p.names) || !slices.Equal(q.ids, p.ids) {
			t.Fatalf("decodeEventID(%q) = %+v, encoded again as %q = %+v", v, p, id, q)
		}
	})
}
