package mux

import "testing"

// TestLegacyReserveBytes: a message's bytes are counted against its session's bound and every
// session's; one that would pass either is refused and counts nothing.
func TestLegacyReserveBytes(t *testing.T) {
	l := &legacyClients{h: &Server{opts: Options{MaxBodyBytes: 100}}}
	a, b := &legacySession{l: l}, &legacySession{l: l}
	if !a.reserveBytes(400) || a.reserveBytes(1) {
		t.Fatal("a session's bound is four bodies of the largest size: 400 then 1 more byte")
	}
	a.releaseBytes(400)
	l.inFlightBytes.Store(legacyMaxInFlightBytes - 10)
	if b.reserveBytes(11) || b.inFlightBytes.Load() != 0 || l.inFlightBytes.Load() != legacyMaxInFlightBytes-10 {
		t.Fatalf("beyond every session's bound: session %d, all %d; want refused, nothing counted", b.inFlightBytes.Load(), l.inFlightBytes.Load())
	}
	if !b.reserveBytes(10) {
		t.Fatal("up to every session's bound: refused")
	}
	b.releaseBytes(10)
	if b.inFlightBytes.Load() != 0 || l.inFlightBytes.Load() != legacyMaxInFlightBytes-10 {
		t.Fatal("released bytes still counted")
	}
}
