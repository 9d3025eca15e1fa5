package mcp

import (
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewSessions[string](SessionLimits{Entries: 3, PerSession: 3, Bytes: 1 << 20, TTL: time.Minute})
	k := func(sess, id string) SessionKey { return SessionKey{Scope: "b/t", Session: sess, ID: id} }
	if ev := s.Put(now, k("A", "n1"), "a1", 1); len(ev) != 0 {
		t.Fatalf("evicted %v", ev)
	}
	s.Put(now, k("A", "n2"), "a2", 1)
	if !s.Has(now, k("A", "n1")) || s.Has(now, k("B", "n1")) || s.Has(now, SessionKey{Scope: "x", Session: "A", ID: "n1"}) {
		t.Fatal("Has wrong")
	}
	if s.Has(now.Add(time.Minute), k("A", "n1")) {
		t.Fatal("an expired request is still in flight")
	}
	if v, ok := s.Take(k("A", "n1")); !ok || v != "a1" {
		t.Fatalf("Take = %q %v", v, ok)
	}
	if s.Has(now, k("A", "n1")) {
		t.Fatal("a taken request is still in flight")
	}
	if _, ok := s.Take(k("A", "n1")); ok {
		t.Fatal("taken twice")
	}
	// Replacing a key returns the old value.
	if ev := s.Put(now, k("A", "n2"), "a2b", 1); len(ev) != 1 || ev[0] != "a2" {
		t.Fatalf("replace evicted %v", ev)
	}
	s.Put(now.Add(time.Second), k("B", "n1"), "b1", 1)
	s.Put(now.Add(2*time.Second), k("B", "n2"), "b2", 1)
	// Full: the oldest goes.
	if ev := s.Put(now.Add(3*time.Second), k("C", "n1"), "c1", 1); len(ev) != 1 || ev[0] != "a2b" {
		t.Fatalf("capacity evicted %v", ev)
	}
	if got := s.Expire(now.Add(time.Minute + 1500*time.Millisecond)); len(got) != 1 || got[0] != "b1" {
		t.Fatalf("Expire = %v", got)
	}
	if n, _ := s.Len(); s.Has(now, k("B", "n1")) || n != 2 {
		t.Fatalf("after expiry: b1 in flight %v, len %d", s.Has(now, k("B", "n1")), n)
	}
}

// TestSessionsPerSession: a session that posts more than PerSession requests without their
// answers pushes out its own oldest requests, and no other session's.
func TestSessionsPerSession(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewSessions[string](SessionLimits{Entries: 100, PerSession: 2, Bytes: 1 << 20, TTL: time.Minute})
	k := func(sess, id string) SessionKey { return SessionKey{Scope: "b/t", Session: sess, ID: id} }
	s.Put(now, k("victim", "1"), "v1", 1)
	s.Put(now, k("flood", "1"), "f1", 1)
	s.Put(now, k("flood", "2"), "f2", 1)
	for i, want := range []string{"f1", "f2", "f3"} {
		id := string(rune('3' + i))
		if ev := s.Put(now, k("flood", id), "f"+id, 1); len(ev) != 1 || ev[0] != want {
			t.Fatalf("flood request %s evicted %v, want [%s]", id, ev, want)
		}
	}
	if v, ok := s.Take(k("victim", "1")); !ok || v != "v1" {
		t.Fatalf("the other session's request is gone: %q %v", v, ok)
	}
	if s.Has(now, k("flood", "1")) {
		t.Fatal("the flood's evicted request is still in flight")
	}
	if n, b := s.Len(); n != 2 || b != 2*(1+len("b/t")+len("flood")+1) {
		t.Fatalf("Len = %d entries, %d bytes", n, b)
	}
}

// TestSessionsBytes: the sizes given to Put bound the table; the oldest entries make room, and
// a value larger than the whole table is given back at once.
func TestSessionsBytes(t *testing.T) {
	now := time.Unix(1000, 0)
	k := func(sess, id string) SessionKey { return SessionKey{Scope: "s", Session: sess, ID: id} }
	keySize := len("s") + len("A") + len("1")
	s := NewSessions[string](SessionLimits{Entries: 100, PerSession: 100, Bytes: 3 * (100 + keySize), TTL: time.Minute})
	for _, id := range []string{"1", "2", "3"} {
		if ev := s.Put(now, k("A", id), "a"+id, 100); len(ev) != 0 {
			t.Fatalf("evicted %v", ev)
		}
	}
	if ev := s.Put(now, k("B", "1"), "b1", 150); len(ev) != 2 || ev[0] != "a1" || ev[1] != "a2" {
		t.Fatalf("a 150-byte entry evicted %v, want [a1 a2]", ev)
	}
	if ev := s.Put(now, k("B", "2"), "huge", 1000); len(ev) != 1 || ev[0] != "huge" {
		t.Fatalf("an entry larger than the table: evicted %v, want [huge]", ev)
	}
	if _, ok := s.Take(k("B", "2")); ok {
		t.Fatal("the oversized entry was kept")
	}
	if n, b := s.Len(); n != 2 || b != 100+keySize+150+keySize {
		t.Fatalf("Len = %d entries, %d bytes", n, b)
	}
}
