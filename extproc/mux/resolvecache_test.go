package mux_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	mcpx "github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// listingTarget is a rawTarget whose tools/list and prompts/list answer the names it holds now
// (settable), and count: a tools/list of a request with "X-Role: admin" lists the tool "admin"
// too; with fail set, its lists fail (-32603); with gate set, each list waits for it to close.
// Each session it opens has an id of its own.
type listingTarget struct {
	mu       sync.Mutex
	tools    []string
	prompts  []string
	fail     bool
	gate     chan struct{}  // when set, each list is answered once it is closed
	lists    map[string]int // by method
	sessions atomic.Int64
}

func newListingTarget(tools ...string) *listingTarget {
	return &listingTarget{tools: tools, lists: map[string]int{}}
}

func (lt *listingTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	admin := r.Header.Get("X-Role") == "admin"
	rt := &rawTarget{
		session: func() string { return fmt.Sprintf("s%d", lt.sessions.Add(1)) },
		answer: func(method string, _ json.RawMessage) (any, int) {
			lt.mu.Lock()
			lt.lists[method]++
			gate := lt.gate
			lt.mu.Unlock()
			if gate != nil {
				<-gate
			}
			lt.mu.Lock()
			defer lt.mu.Unlock()
			if lt.fail {
				return nil, mcpx.CodeInternalError
			}
			names, key := lt.tools, "tools"
			if method == "prompts/list" {
				names, key = lt.prompts, "prompts"
			}
			if admin && key == "tools" {
				names = append(names[:len(names):len(names)], "admin")
			}
			items := []map[string]any{}
			for _, n := range names {
				items = append(items, map[string]any{"name": n, "inputSchema": map[string]any{"type": "object"}})
			}
			return map[string]any{key: items}, 0
		},
	}
	rt.ServeHTTP(w, r)
}

func (lt *listingTarget) set(f func(lt *listingTarget)) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	f(lt)
}

// count returns how many method requests lt got.
func (lt *listingTarget) count(method string) int {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return lt.lists[method]
}

// clock is a time that tests move by hand (nanoseconds since the Unix epoch).
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

const cacheTTL = 2 * time.Second

// newCachedMux serves a Never backend of the targets a, b, ... (handlers) under failureMode
// with a resolve cache of cacheTTL whose time is the returned clock's.
func newCachedMux(t *testing.T, failureMode string, targets ...*listingTarget) (string, *mux.Server, string, *clock) {
	t.Helper()
	var names []string
	var handlers []http.Handler
	for i, lt := range targets {
		names = append(names, string(rune('a'+i)))
		handlers = append(handlers, lt)
	}
	url, m, desc := newRawMux(t, mux.Options{ResolveCacheTTL: cacheTTL}, contract.PrefixModeNever, failureMode, names, handlers...)
	c := &clock{}
	c.ns.Store(time.Unix(1_800_000_000, 0).UnixNano())
	mux.SetResolveClock(m, c.Now)
	return url, m, desc, c
}

// lists returns how many method requests each of targets got.
func lists(method string, targets ...*listingTarget) []int {
	var out []int
	for _, lt := range targets {
		out = append(out, lt.count(method))
	}
	return out
}

// resolveAt is resolve of q's fields with host.
func resolveAt(m *mux.Server, desc, sid, host string, it mcpx.Item, name string) (string, *mux.ResolveError) {
	return resolveAs(m, desc, sid, host, "", it, name)
}

// resolveAs is resolveAt for a caller (Query.Caller).
func resolveAs(m *mux.Server, desc, sid, host, caller string, it mcpx.Item, name string) (string, *mux.ResolveError) {
	target, err := m.Resolve(context.Background(), mux.Query{Mux: desc, Session: sid, Header: http.Header{}, Host: host, Caller: caller, ID: json.RawMessage(`1`), Item: it, Name: name})
	var re *mux.ResolveError
	if err != nil && !errors.As(err, &re) {
		re = &mux.ResolveError{Kind: "not a *ResolveError: " + err.Error()}
	}
	return target, re
}

// wantLists fails t unless targets got want method requests each.
func wantLists(t *testing.T, step, method string, want int, targets ...*listingTarget) {
	t.Helper()
	for i, got := range lists(method, targets...) {
		if got != want {
			t.Errorf("%s: target %c got %d %s requests, want %d", step, 'a'+i, got, method, want)
		}
	}
}

// TestResolveCacheHit: within the TTL, Resolve answers from the resolution of the first call:
// the target of another name, an ambiguous name (its error as uncached) and a prompt's
// resolution of its own (the tools' kept beside it), with no more list requests; once the TTL has passed it lists again.
func TestResolveCacheHit(t *testing.T) {
	a, b := newListingTarget("f0", "both"), newListingTarget("g0", "both")
	a.prompts, b.prompts = []string{"p"}, []string{"q"}
	url, m, desc, clk := newCachedMux(t, contract.FailClosed, a, b)
	sid, _ := openRaw(t, url)
	if target, err := resolve(m, desc, sid, mcpx.Tool, "f0"); err != nil || target != "a" {
		t.Fatalf("Resolve(f0) = %q, %+v; want a", target, err)
	}
	wantLists(t, "first call", "tools/list", 1, a, b)
	clk.advance(cacheTTL - time.Nanosecond)
	if target, err := resolve(m, desc, sid, mcpx.Tool, "g0"); err != nil || target != "b" {
		t.Errorf("Resolve(g0), cached = %q, %+v; want b", target, err)
	}
	if _, err := resolve(m, desc, sid, mcpx.Tool, "both"); err == nil || err.Kind != mux.ResolveAmbiguous ||
		err.Message != "Tool both is served by multiple targets: a, b" || err.Code != mcpx.CodeInvalidParams {
		t.Errorf("Resolve(both), cached = %+v; want ambiguous naming a, b", err)
	}
	wantLists(t, "within the TTL", "tools/list", 1, a, b)
	// Prompts are resolved apart: one prompts/list each, then cached too.
	for range 2 {
		if target, err := resolve(m, desc, sid, mcpx.Prompt, "q"); err != nil || target != "b" {
			t.Errorf("Resolve(prompt q) = %q, %+v; want b", target, err)
		}
	}
	wantLists(t, "prompts", "prompts/list", 1, a, b)
	// ... in an entry of their own: the tools' is still there.
	if target, err := resolve(m, desc, sid, mcpx.Tool, "g0"); err != nil || target != "b" {
		t.Errorf("Resolve(g0), cached, after the prompts = %q, %+v; want b", target, err)
	}
	wantLists(t, "tools after prompts", "tools/list", 1, a, b)
	clk.advance(time.Nanosecond) // the TTL has passed
	if target, err := resolve(m, desc, sid, mcpx.Tool, "g0"); err != nil || target != "b" {
		t.Errorf("Resolve(g0), expired = %q, %+v; want b", target, err)
	}
	wantLists(t, "after the TTL", "tools/list", 2, a, b)
}

// TestResolveCacheMiss: a name not in the cached resolution is resolved afresh once: a tool
// added at a target since is found at once, and an unknown name lists once more before it is
// unknown; a tool moved since goes, within the TTL, to the target it was cached for.
func TestResolveCacheMiss(t *testing.T) {
	a, b := newListingTarget("f0"), newListingTarget("g0")
	url, m, desc, _ := newCachedMux(t, contract.FailClosed, a, b)
	sid, _ := openRaw(t, url)
	if target, err := resolve(m, desc, sid, mcpx.Tool, "f0"); err != nil || target != "a" {
		t.Fatalf("Resolve(f0) = %q, %+v; want a", target, err)
	}
	b.set(func(lt *listingTarget) { lt.tools = append(lt.tools, "added") })
	if target, err := resolve(m, desc, sid, mcpx.Tool, "added"); err != nil || target != "b" {
		t.Errorf("Resolve(added), added at b after the cache = %q, %+v; want b", target, err)
	}
	wantLists(t, "a name added", "tools/list", 2, a, b)
	if _, err := resolve(m, desc, sid, mcpx.Tool, "nope"); err == nil || err.Kind != mux.ResolveUnknown || err.Message != "Unknown tool: nope" {
		t.Errorf("Resolve(nope) = %+v; want Unknown tool: nope", err)
	}
	wantLists(t, "an unknown name", "tools/list", 3, a, b)
	// The fresh resolution replaced the entry: "added" is known without a list.
	a.set(func(lt *listingTarget) { lt.tools = append(lt.tools, "g0") })
	b.set(func(lt *listingTarget) { lt.tools = []string{"added"} })
	if target, err := resolve(m, desc, sid, mcpx.Tool, "g0"); err != nil || target != "b" {
		t.Errorf("Resolve(g0), cached for b = %q, %+v; want b (stale within the TTL)", target, err)
	}
	wantLists(t, "a name cached", "tools/list", 3, a, b)
}

// TestResolveInFlight: calls of a session that come while its first resolution is being made
// wait for it: four parallel first calls list each target once, and each gets its target.
func TestResolveInFlight(t *testing.T) {
	a, b := newListingTarget("f0"), newListingTarget("g0")
	url, m, desc, _ := newCachedMux(t, contract.FailClosed, a, b)
	sid, _ := openRaw(t, url)
	gate := make(chan struct{})
	for _, lt := range []*listingTarget{a, b} {
		lt.set(func(lt *listingTarget) { lt.gate = gate })
	}
	names := []string{"f0", "g0", "f0", "g0"}
	type answer struct{ name, target string }
	answers := make(chan answer, len(names))
	for _, name := range names {
		go func() {
			target, err := resolve(m, desc, sid, mcpx.Tool, name)
			if err != nil {
				target = "error: " + err.Message
			}
			answers <- answer{name, target}
		}()
	}
	// Every call is either listing (a's list requests so far) or waiting; with the lists held,
	// the counts settle. Without the flight each call lists.
	for lists("tools/list", a)[0]+mux.ResolveWaiters(m) < len(names) {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	for range names {
		if got := <-answers; got.target != map[string]string{"f0": "a", "g0": "b"}[got.name] {
			t.Errorf("Resolve(%s) = %q", got.name, got.target)
		}
	}
	wantLists(t, "parallel first calls", "tools/list", 1, a, b)
}

// TestResolveCacheFailures: a resolution in which a target failed is not kept: under FailOpen
// (the target skipped, the call resolved) and under FailClosed (the call failed) the next call
// lists again; once the target answers, the resolution is kept.
func TestResolveCacheFailures(t *testing.T) {
	for _, mode := range []string{contract.FailOpen, contract.FailClosed} {
		a, b := newListingTarget("f0"), newListingTarget("g0")
		b.fail = true
		url, m, desc, _ := newCachedMux(t, mode, a, b)
		sid, _ := openRaw(t, url)
		for i := range 2 {
			target, err := resolve(m, desc, sid, mcpx.Tool, "f0")
			switch {
			case mode == contract.FailOpen && (err != nil || target != "a"):
				t.Errorf("%s, b failing: Resolve(f0) = %q, %+v; want a", mode, target, err)
			case mode == contract.FailClosed && (err == nil || err.Kind != mux.ResolveFailed):
				t.Errorf("%s, b failing: Resolve(f0) = %q, %+v; want failed", mode, target, err)
			}
			wantLists(t, fmt.Sprintf("%s, b failing, call %d", mode, i+1), "tools/list", i+1, a, b)
		}
		b.set(func(lt *listingTarget) { lt.fail = false })
		for range 2 {
			if target, err := resolve(m, desc, sid, mcpx.Tool, "g0"); err != nil || target != "b" {
				t.Errorf("%s, b back: Resolve(g0) = %q, %+v; want b", mode, target, err)
			}
		}
		wantLists(t, mode+", b back", "tools/list", 3, a, b)
	}
}

// TestResolveCacheKeys: resolutions are not shared between sessions, between routes whose
// request header changes or URLRewrite host differ, nor between hosts: each lists on its own.
// A route that makes a target list more (a header it sets) does not lend its names to one
// that does not.
func TestResolveCacheKeys(t *testing.T) {
	a, b := newListingTarget("f0"), newListingTarget("g0")
	url, m, desc, _ := newCachedMux(t, contract.FailClosed, a, b)
	sid1, _ := openRaw(t, url)
	sid2, _ := openRaw(t, url)
	if sid1 == sid2 {
		t.Fatalf("two sessions with the same id %q", sid1)
	}
	admin := strings.Replace(desc, `"targets":`, `"requestHeaders":{"add":[{"name":"X-Role","value":"admin"}]},"targets":`, 1)
	rewritten := strings.Replace(desc, `"targets":`, `"host":"tools.internal","targets":`, 1)
	steps := []struct {
		step, desc, sid, host, caller string
	}{
		{"session 1", desc, sid1, "gw", ""},
		{"session 2", desc, sid2, "gw", ""},
		{"session 1, header changes", admin, sid1, "gw", ""},
		{"session 1, URLRewrite host", rewritten, sid1, "gw", ""},
		{"session 1, another host", desc, sid1, "other", ""},
		// Stateless targets give every client the same composite session id: the caller keeps
		// one caller's lists (which a target may make per caller) from another's calls.
		{"session 1, another caller", desc, sid1, "gw", "bob"},
	}
	for i, s := range steps {
		if target, err := resolveAs(m, s.desc, s.sid, s.host, s.caller, mcpx.Tool, "g0"); err != nil || target != "b" {
			t.Errorf("%s: Resolve(g0) = %q, %+v; want b", s.step, target, err)
		}
		wantLists(t, s.step, "tools/list", i+1, a, b)
	}
	for _, s := range steps { // each is cached now
		if target, err := resolveAs(m, s.desc, s.sid, s.host, s.caller, mcpx.Tool, "g0"); err != nil || target != "b" {
			t.Errorf("%s again: Resolve(g0) = %q, %+v; want b", s.step, target, err)
		}
	}
	wantLists(t, "every step again", "tools/list", len(steps), a, b)
	// "admin" is listed (by both) only with the route's header: ambiguous there, unknown without.
	if _, err := resolveAt(m, admin, sid1, "gw", mcpx.Tool, "admin"); err == nil || err.Kind != mux.ResolveAmbiguous {
		t.Errorf("Resolve(admin) with X-Role set by the route = %+v; want ambiguous", err)
	}
	if _, err := resolveAt(m, desc, sid1, "gw", mcpx.Tool, "admin"); err == nil || err.Kind != mux.ResolveUnknown {
		t.Errorf("Resolve(admin) without the route's header = %+v; want unknown", err)
	}
}

// TestResolveCacheBound: past its bound of entries the cache evicts the oldest: the first
// session lists again, the last does not; a bound of bytes likewise.
func TestResolveCacheBound(t *testing.T) {
	for _, bound := range []struct {
		name           string
		entries, bytes int
	}{{"entries", 2, 1 << 20}, {"bytes", 100, 200}} {
		a := newListingTarget("f0", "a-tool-with-a-long-name")
		url, m, desc, _ := newCachedMux(t, contract.FailClosed, a)
		mux.SetResolveCacheBounds(m, bound.entries, bound.bytes)
		var sids []string
		for range 3 {
			sid, _ := openRaw(t, url)
			sids = append(sids, sid)
			if target, err := resolve(m, desc, sid, mcpx.Tool, "f0"); err != nil || target != "a" {
				t.Fatalf("Resolve(f0) = %q, %+v; want a", target, err)
			}
		}
		wantLists(t, bound.name+": 3 sessions", "tools/list", 3, a)
		if n := mux.ResolveCacheLen(m); n < 1 || n > 2 {
			t.Errorf("%s: %d entries after 3 sessions, bound 2", bound.name, n)
		}
		resolve(m, desc, sids[2], mcpx.Tool, "f0")
		wantLists(t, bound.name+": the last session again", "tools/list", 3, a)
		resolve(m, desc, sids[0], mcpx.Tool, "f0")
		wantLists(t, bound.name+": the first session again", "tools/list", 4, a)
	}
}

// TestResolveCacheOff: without Options.ResolveCacheTTL every call lists.
func TestResolveCacheOff(t *testing.T) {
	a := newListingTarget("f0")
	url, m, desc := newRawMux(t, mux.Options{}, contract.PrefixModeNever, contract.FailClosed, []string{"a"}, a)
	sid, _ := openRaw(t, url)
	for range 2 {
		if target, err := resolve(m, desc, sid, mcpx.Tool, "f0"); err != nil || target != "a" {
			t.Errorf("Resolve(f0) = %q, %+v; want a", target, err)
		}
	}
	wantLists(t, "no cache", "tools/list", 2, a)
}
