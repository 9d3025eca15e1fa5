package mux

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/contract"
)

// TestOlderMemo: a mark holds for olderMemoTTL and only while the backend has the targets it was
// made with; another backend is not marked.
func TestOlderMemo(t *testing.T) {
	a := contract.MuxTarget{Name: "a", Cluster: "cluster-a", Path: "/mcp"}
	b := contract.MuxTarget{Name: "b", Cluster: "cluster-b", Path: "/mcp"}
	m := &contract.Mux{Backend: "ns/be", Targets: []contract.MuxTarget{a, b}}
	now := time.Now()
	var o olderMemo
	if o.known(m, now) {
		t.Fatal("known before any mark")
	}
	o.mark(m, now)
	for _, c := range []struct {
		name string
		m    *contract.Mux
		at   time.Time
		want bool
	}{
		{"same backend", m, now.Add(olderMemoTTL - time.Second), true},
		{"expired", m, now.Add(olderMemoTTL), false},
		{"targets changed", &contract.Mux{Backend: "ns/be", Targets: []contract.MuxTarget{a}}, now, false},
		{"target moved", &contract.Mux{Backend: "ns/be", Targets: []contract.MuxTarget{a, {Name: "b", Cluster: "cluster-b2", Path: "/mcp"}}}, now, false},
		{"other backend", &contract.Mux{Backend: "ns/other", Targets: m.Targets}, now, false},
	} {
		if got := o.known(c.m, c.at); got != c.want {
			t.Errorf("%s: known = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestOlderMemoForgets: the marks of backends that are not marked again (a backend deleted, or
// renamed) go once expired, when another is marked: the memo does not grow with every backend
// the mux ever served.
func TestOlderMemoForgets(t *testing.T) {
	now := time.Now()
	var o olderMemo
	for i := range 100 {
		o.mark(&contract.Mux{Backend: fmt.Sprintf("ns/be-%d", i)}, now)
	}
	o.mark(&contract.Mux{Backend: "ns/late"}, now.Add(olderMemoTTL))
	n := 0
	o.marks.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d marks after 100 backends' marks expired and another was made, want 1", n)
	}
}

// TestModernVersion: a version of the modern era is a date (YYYY-MM-DD) from ModernVersion on;
// text that only sorts after it is none.
func TestModernVersion(t *testing.T) {
	for v, want := range map[string]bool{
		ModernVersion: true, "2026-12-01": true, "2030-01-01": true,
		"2025-11-25": false, "": false, "9": false, "3000": false, "zzz": false, "2026-07-28x": false, "2026/07/28": false, "2026-7a-28": false,
	} {
		if got := modernVersion(v); got != want {
			t.Errorf("modernVersion(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestOptionDefaults: options left zero take their defaults, the target timeout among them (0
// would wait for a hung target for ever).
func TestOptionDefaults(t *testing.T) {
	o := New(Options{}).Options()
	if o.TargetTimeout != DefaultTargetTimeout || o.StreamOpenTimeout != DefaultStreamOpenTimeout || o.ResolveTimeout != DefaultResolveTimeout ||
		o.MaxSSESessionsPerCaller != DefaultMaxSSESessionsPerCaller || o.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("options of New(Options{}): %+v", o)
	}
}
