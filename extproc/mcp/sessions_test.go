package mcp

import (
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewSessions[string](3, time.Minute)
	k := func(sess, id string) SessionKey { return SessionKey{Scope: "b/t", Session: sess, ID: id} }
	if ev := s.Put(now, k("A", "n1"), "a1", true); len(ev) != 0 {
		t.Fatalf("evicted %v", ev)
	}
	s.Put(now, k("A", "n2"), "a2", false)
	if !s.NeedsRewrite("b/t", "A") || s.NeedsRewrite("b/t", "B") || s.NeedsRewrite("x", "A") {
		t.Fatal("NeedsRewrite wrong")
	}
	if v, ok := s.Take(k("A", "n1")); !ok || v != "a1" {
		t.Fatalf("Take = %q %v", v, ok)
	}
	if s.NeedsRewrite("b/t", "A") {
		t.Fatal("rewrite still needed after the only rewrite entry was taken")
	}
	if _, ok := s.Take(k("A", "n1")); ok {
		t.Fatal("taken twice")
	}
	// Replacing a key returns the old value.
	if ev := s.Put(now, k("A", "n2"), "a2b", false); len(ev) != 1 || ev[0] != "a2" {
		t.Fatalf("replace evicted %v", ev)
	}
	s.Put(now.Add(time.Second), k("B", "n1"), "b1", true)
	s.Put(now.Add(2*time.Second), k("B", "n2"), "b2", false)
	// Full: the oldest goes.
	if ev := s.Put(now.Add(3*time.Second), k("C", "n1"), "c1", false); len(ev) != 1 || ev[0] != "a2b" {
		t.Fatalf("capacity evicted %v", ev)
	}
	if got := s.Expire(now.Add(time.Minute + 1500*time.Millisecond)); len(got) != 1 || got[0] != "b1" {
		t.Fatalf("Expire = %v", got)
	}
	if s.NeedsRewrite("b/t", "B") || s.Len() != 2 {
		t.Fatalf("after expiry: rewrite %v len %d", s.NeedsRewrite("b/t", "B"), s.Len())
	}
}
