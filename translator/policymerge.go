// Merging policies: where a route rule sends its traffic (an attachment: Gateway, listener,
// HTTPRoute, rule, backend) selects the policies of each level, which merge into one ext_proc
// policy resource (mergedPolicy, named after its sources) shared by every rule with the same
// merge. mergeRule (routeenvoy.go) merges per rule and backendRef.

package translator

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// attachment is where a route rule's traffic goes: the levels policies attach at.
type attachment struct {
	gateway, listener, route, rule, backend string // index keys; "" = level absent
}

// The levels of an attachment, least specific first (levels).
const (
	levelGateway = iota
	levelListener
)

// levels returns the policies of an attachment's levels, least specific first: Gateway,
// listener, HTTPRoute, rule, backend (a level the attachment lacks has none).
func (t *translation) levels(a attachment) [5][]*policyInfo {
	idx := t.policies
	levels := [5][]*policyInfo{idx.gateway[a.gateway], idx.listener[a.listener], idx.route[a.route], idx.rule[a.rule], idx.backend[a.backend]}
	if a.listener == "" {
		levels[1] = nil
	}
	if a.rule == "" {
		levels[3] = nil
	}
	if a.backend == "" {
		levels[4] = nil
	}
	return levels
}

// merge returns the merged policy of an attachment, or nil when no policy applies. The JWT
// authentication comes from the most specific level that sets one (the oldest policy within a
// level); authorization rules from every level, least specific first. The policy's name joins
// its sources, plus "jwt=SOURCE" when several of them set JWT authentication. Routes attach
// concurrently: the merges of one name (the same policies, so the same content) share the
// first one made.
func (t *translation) merge(a attachment) *mergedPolicy {
	levels := t.levels(a)
	var jwtFrom *policyInfo
	var invalid []string
	for l := len(levels) - 1; l >= 0; l-- {
		for _, pi := range levels[l] {
			if pi.invalid {
				invalid = append(invalid, pi.source)
			}
		}
		if jwtFrom == nil {
			jwtFrom = jwtSetter(levels[l])
		}
	}
	if len(invalid) > 0 {
		sort.Strings(invalid)
		return &mergedPolicy{invalid: invalid}
	}
	var buf [8]*policyInfo
	taken := policySet{list: buf[:0]}
	for _, lv := range levels {
		for _, pi := range lv {
			if pi == jwtFrom || len(pi.traffic) > 0 || len(pi.mcp) > 0 {
				taken = taken.add(pi)
			}
		}
	}
	contrib := taken.list
	if len(contrib) == 0 {
		return nil
	}
	var sbuf [len(buf) + 1]string
	sources := sbuf[:0]
	withJWT := 0
	for _, pi := range contrib {
		sources = append(sources, pi.source)
		if pi.jwt != nil {
			withJWT++
		}
	}
	nameParts := sources
	if withJWT > 1 {
		// the same sources can merge to different JWT settings (each route takes them from
		// its most specific level): the name says whose apply
		nameParts = append(sources, "jwt="+jwtFrom.source)
	}
	name := policyName(nameParts)
	t.mergeMu.Lock()
	defer t.mergeMu.Unlock()
	if prev, ok := t.merged[name]; ok {
		return prev // most merges of many routes are shared: nothing is allocated for them
	}
	b := &mergedBlock{}
	pol := &b.pol
	pol.Name = name
	if len(sources) == 1 {
		b.source[0] = sources[0]
		pol.Sources = b.source[:]
	} else {
		pol.Sources = slices.Clone(sources)
	}
	if jwtFrom != nil {
		pol.Jwt = jwtFrom.jwt
	}
	for _, pi := range contrib {
		pol.TrafficRules = appendRules(pol.TrafficRules, pi.traffic)
		pol.McpRules = appendRules(pol.McpRules, pi.mcp)
	}
	b.m.policy = pol
	t.merged[name] = &b.m
	return &b.m
}

// mcpUnenforced reports whether a policy attached to the HTTPRoute, the rule or the backend of
// a (ref's attachment; ref is not MCP) has MCP rules: ext_proc reads no MCP message there, so
// the rules would hold nothing back, and the rule answers 500 instead (fail closed), the
// policy's status and a warning naming the backendRef (policyInfo.unenforced).
// MCP rules of a Gateway or listener are about the MCP backends behind it: its other routes do
// not answer for them.
func (t *translation) mcpUnenforced(a attachment, cr *compiledRoute, c *compiledRule, ref ruleRef) bool {
	levels := t.levels(a)
	found := false
	for _, lv := range levels[2:] {
		for _, pi := range lv {
			if len(pi.mcp) == 0 || pi.invalid {
				continue
			}
			found = true
			where := "HTTPRoute " + cr.key + " spec.rules[" + strconv.Itoa(c.index) + "].backendRefs[" + strconv.Itoa(ref.index) + "]"
			t.mergeMu.Lock()
			if !slices.Contains(pi.unenforced, where) {
				pi.unenforced = append(pi.unenforced, where)
			}
			t.mergeMu.Unlock()
		}
	}
	return found
}

// mergedBlock holds the messages of a new merge, allocated together (a route with its own
// policy has one).
type mergedBlock struct {
	m      mergedPolicy
	pol    policyv1.Policy
	source [1]string
}

// appendRules appends a contributor's rules to a merged policy's. The first rules are shared
// with the contributor, not copied: nothing modifies either list, and the capacity is clipped
// so that appending the next contributor's copies them.
func appendRules(dst, src []*policyv1.Rule) []*policyv1.Rule {
	if len(dst) == 0 && len(src) > 0 {
		return slices.Clip(src)
	}
	return append(dst, src...)
}

// policySet collects the policies that contribute to a merge, least specific first, each once.
// Only a policy with several targets can come up twice (at several levels, or twice at one):
// it is looked up by a scan of the list, or in a set once the list is long (many policies on
// one Gateway).
type policySet struct {
	list  []*policyInfo
	multi map[*policyInfo]bool // made when the list is long
}

// add returns the set with pi. It takes and returns the set by value, so that a list backed by
// an array of the caller's stays on its stack.
func (s policySet) add(pi *policyInfo) policySet {
	if pi.resolved > 1 {
		if s.multi == nil && len(s.list) > 16 {
			s.multi = make(map[*policyInfo]bool, 2*len(s.list))
			for _, p := range s.list {
				s.multi[p] = true
			}
		}
		switch {
		case s.multi != nil && s.multi[pi], s.multi == nil && slices.Contains(s.list, pi):
			return s
		case s.multi != nil:
			s.multi[pi] = true
		}
	}
	s.list = append(s.list, pi)
	return s
}

// policyName joins the sources with "+", or hashes them when that is longer than 200 bytes.
func policyName(sources []string) string {
	if len(sources) == 1 && len(sources[0]) <= maxPolicyNameBytes {
		return sources[0]
	}
	n := strings.Join(sources, "+")
	if len(n) <= maxPolicyNameBytes {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return "sha256:" + hex.EncodeToString(sum[:8])
}
