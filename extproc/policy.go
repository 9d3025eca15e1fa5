package extproc

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/jwt"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// policy is one Policy resource compiled for use.
type policy struct {
	name string
	// raw is the resource it was compiled from: an update that leaves it unchanged keeps the
	// compiled policy.
	raw []byte
	// auth is nil when the policy has no JWT authentication.
	auth *jwt.Authenticator
	// authKey identifies auth's configuration, so that an unchanged one is kept across updates
	// (with its key and token caches).
	authKey string
	// traffic and tools are the traffic and MCP rules; nil when there are none.
	traffic, tools *authz.RuleSet
	// claims are the JWT claims the rules read, for audit lines.
	claims []string
	// oauth is the Protected Resource Metadata the policy's routes serve (jwt.mcp); nil for none.
	oauth *resourceMetadata
}

// readsArguments reports whether the rules that run on a request's body read the tool
// arguments: the MCP rules, and the traffic rules when they are deferred to the body.
func (p *policy) readsArguments(trafficDeferred bool) bool {
	return p.tools.ReadsArguments() || (trafficDeferred && p.traffic.ReadsArguments())
}

// argumentInOtherCase returns an argument member of in's tools/call that only letter case tells
// from one the rules that run on the body select (authz.RuleSet.ArgumentInOtherCase). False for no
// policy.
func (p *policy) argumentInOtherCase(in *authz.Input, trafficDeferred bool) (member string, found bool) {
	if p == nil {
		return "", false
	}
	if member, found = p.tools.ArgumentInOtherCase(in); !found && trafficDeferred {
		member, found = p.traffic.ArgumentInOtherCase(in)
	}
	return member, found
}

// readsMessages reports whether p's rules judge an MCP request by its body's messages: MCP
// rules, or traffic rules that read mcp.* (deferred to the body). False for no policy.
func (p *policy) readsMessages() bool {
	return p != nil && (p.tools != nil || p.traffic.NeedsMCP())
}

// policySet is one accepted version of all policies. Streams take it when they start and keep it
// to their end, so that a new version never changes a request in flight. Authenticators that a
// newer set no longer uses are closed when the last stream holding the old set ends.
type policySet struct {
	byName map[string]*policy
	// rejected holds the policies that the control plane sent but that did not compile and have
	// no last good version: their routes fail closed at once instead of waiting for them.
	rejected map[string]bool
	// failed holds, by name, the resource bytes that did not compile and why: an update that
	// sends them again is refused again without compiling them.
	failed map[string]failure
	// replaced is closed when a newer set replaces this one: it wakes the requests waiting for a
	// policy this set lacks (see stream.awaitPolicy).
	replaced chan struct{}
	refs     atomic.Int64
	// retired is set when a newer set replaced this one; orphans are its authenticators that the
	// newer set does not use.
	retired   atomic.Bool
	orphans   []*jwt.Authenticator
	closeOnce sync.Once
}

// failure is a policy resource that did not compile.
type failure struct {
	raw []byte
	err error
}

func newPolicySet(n int) *policySet {
	return &policySet{byName: make(map[string]*policy, n), rejected: map[string]bool{}, failed: map[string]failure{}, replaced: make(chan struct{})}
}

// authenticators returns the set's authenticators.
func (ps *policySet) authenticators() map[*jwt.Authenticator]bool {
	used := make(map[*jwt.Authenticator]bool, len(ps.byName))
	for _, p := range ps.byName {
		if p.auth != nil {
			used[p.auth] = true
		}
	}
	return used
}

func (ps *policySet) closeOrphans() {
	ps.closeOnce.Do(func() {
		for _, a := range ps.orphans {
			a.Close()
		}
	})
}

// policyStore holds the current policySet.
type policyStore struct {
	cur atomic.Pointer[policySet]
	// mu serializes updates.
	mu sync.Mutex
	// ready is set once a first set was accepted.
	ready atomic.Bool
}

// acquire returns the current set, held until release.
func (st *policyStore) acquire() *policySet {
	for {
		ps := st.cur.Load()
		ps.refs.Add(1)
		if st.cur.Load() == ps {
			return ps
		}
		st.release(ps)
	}
}

func (st *policyStore) release(ps *policySet) {
	if ps.refs.Add(-1) == 0 && ps.retired.Load() {
		ps.closeOrphans()
	}
}

// swap installs next, retires the set it replaces and wakes the requests waiting on that one.
func (st *policyStore) swap(next *policySet) {
	old := st.cur.Swap(next)
	st.ready.Store(true)
	if old == nil {
		return
	}
	defer close(old.replaced)
	used := next.authenticators()
	for _, p := range old.byName {
		if p.auth != nil && !used[p.auth] && !slices.Contains(old.orphans, p.auth) {
			old.orphans = append(old.orphans, p.auth)
		}
	}
	old.retired.Store(true)
	if old.refs.Load() == 0 {
		old.closeOrphans()
	}
}

// HandlePolicies is the handler of the policy subscription (an xds/client Handler): it receives
// the whole current set of policies, compiles the new and changed ones (CEL rules, JWT
// providers) and installs them for new streams. Like Envoy with listeners and clusters, it
// applies what it can: a policy that does not compile keeps its last good version (or, lacking
// one, fails its routes closed) while the others are updated, and the error naming it NACKs the
// update. The update after it NACKs the same policy again while it stays (the control plane's
// state stays true), without compiling the same bytes again.
func (s *Server) HandlePolicies(typeURL string, resources map[string]*anypb.Any) error {
	if typeURL != contract.PolicyTypeURL {
		return fmt.Errorf("ext_proc subscribes to %s only, got %s", contract.PolicyTypeURL, typeURL)
	}
	s.policies.mu.Lock()
	defer s.policies.mu.Unlock()
	prev := s.policies.cur.Load()
	reuse := map[string]*jwt.Authenticator{}
	for _, p := range prev.byName {
		if p.auth != nil {
			reuse[p.authKey] = p.auth
		}
	}
	next := newPolicySet(len(resources))
	var created []*jwt.Authenticator
	var errs []error
	var rejected []string
	names := make([]string, 0, len(resources))
	for name := range resources {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		res, old := resources[name], prev.byName[name]
		if old != nil && bytes.Equal(old.raw, res.GetValue()) {
			next.byName[name] = old
			continue
		}
		var p *policy
		var fresh *jwt.Authenticator
		f, seen := prev.failed[name]
		if seen && bytes.Equal(f.raw, res.GetValue()) {
			s.log.Debug("policy unchanged since it was refused: refused again, not compiled", "policy", name)
		} else {
			f.raw = res.GetValue()
			p, fresh, f.err = s.compilePolicy(name, res, reuse)
		}
		if fresh != nil {
			created = append(created, fresh)
		}
		if f.err == nil {
			next.byName[name] = p
			continue
		}
		next.failed[name] = f
		errs = append(errs, f.err)
		rejected = append(rejected, name)
		if old != nil {
			next.byName[name] = old
		} else {
			next.rejected[name] = true
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		// An authenticator made for a rejected policy serves nobody (one that a valid policy
		// shares is kept).
		used := next.authenticators()
		for _, a := range created {
			if !used[a] {
				a.Close()
			}
		}
	}
	s.policies.swap(next)
	s.tel.PolicyUpdate(err == nil)
	if err != nil {
		s.log.Warn("policy update partly rejected: the rejected policies keep their last good version, if any, and the others are updated",
			"rejected", rejected, "policies", len(next.byName), "error", err)
		return err
	}
	s.log.Info("policies updated", "policies", len(next.byName))
	return nil
}

// compilePolicy compiles one resource. fresh is an authenticator it created (to be closed if the
// update is rejected).
func (s *Server) compilePolicy(name string, res *anypb.Any, reuse map[string]*jwt.Authenticator) (p *policy, fresh *jwt.Authenticator, err error) {
	var pb policyv1.Policy
	if err := res.UnmarshalTo(&pb); err != nil {
		return nil, nil, fmt.Errorf("policy %s: %w", name, err)
	}
	if pb.GetName() != "" && pb.GetName() != name {
		return nil, nil, fmt.Errorf("policy %s: name field is %q, want the resource name", name, pb.GetName())
	}
	p = &policy{name: name, raw: res.GetValue()}
	var errs []error
	if p.traffic, err = s.compileRules(pb.GetTrafficRules()); err != nil {
		errs = append(errs, fmt.Errorf("traffic_rules: %w", err))
	}
	if p.tools, err = s.compileRules(pb.GetMcpRules()); err != nil {
		errs = append(errs, fmt.Errorf("mcp_rules: %w", err))
	}
	if j := pb.GetJwt(); j != nil {
		authn := j
		if j.GetMcp() != nil {
			// The authenticator does not read the metadata: one that changes keeps the
			// authenticator and its key and token caches.
			authn = proto.CloneOf(j)
			authn.Mcp = nil
		}
		key, err := proto.MarshalOptions{Deterministic: true}.Marshal(authn)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwt: %w", err))
		} else if a, ok := reuse[string(key)]; ok {
			p.auth, p.authKey = a, string(key)
		} else if a, err := jwt.New(j, s.cfg.JWT); err != nil {
			errs = append(errs, fmt.Errorf("jwt: %w", err))
		} else {
			p.auth, p.authKey, fresh = a, string(key), a
			reuse[string(key)] = a
		}
		if p.oauth, err = compileResourceMetadata(j.GetMcp()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fresh, fmt.Errorf("policy %s: %w", name, err)
	}
	claims := append(slices.Clone(p.traffic.ReferencedClaims()), p.tools.ReferencedClaims()...)
	slices.Sort(claims)
	p.claims = slices.Compact(claims)
	return p, fresh, nil
}

// compileRules returns nil for no rules.
func (s *Server) compileRules(rules []*policyv1.Rule) (*authz.RuleSet, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	return s.env.Compile(rules)
}
