// Backend authentication (agentgateway's BackendAuth): the credential a backendRef's requests
// carry to the backend. An AgentgatewayBackend's own spec.policies.auth applies, else the most
// specific policy's spec.backend.auth (authOf). key and secretRef become the route's (or the
// weighted cluster's) Authorization header, which printed configuration redacts (Redacted);
// passthrough tells ext_proc, in the route's metadata (contract.MetadataPassthrough), to keep the
// caller's validated token, which JWT authentication otherwise removes.

package translator

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// routeAuth is the credential a backendRef's requests get. The zero value is none.
type routeAuth struct {
	// header is the Authorization value the route sets (key, secretRef); "" sets none
	header string
	// passthrough: ext_proc keeps the caller's validated token (contract.MetadataPassthrough)
	passthrough bool
}

// set reports whether the auth says anything.
func (a routeAuth) set() bool { return a.header != "" || a.passthrough }

// maxKeyChars is the longest inline key (BackendAuth.Key), in characters as the CRD's MaxLength
// counts them; files meet no API server, so translateAuth checks it too.
const maxKeyChars = 2048

// authExactlyOne is the refusal of a BackendAuth that sets none or several of its fields (the CRD
// refuses it too; files meet no API server).
const authExactlyOne = "exactly one of key, secretRef and passthrough must be set"

// translateAuth validates a BackendAuth at field (spec.policies.auth of a backend, spec.backend.auth
// of a policy) of an object in namespace ns, and returns what the routes get, or the field and
// message of its refusal. stale, when the Secret could not be read and a copy read before is used,
// says so (the caller warns).
func (t *translation) translateAuth(ns string, a *v1alpha1.BackendAuth, field string) (out routeAuth, badField, msg, stale string) {
	set := 0
	for _, p := range [...]bool{a.Key != nil, a.SecretRef != nil, a.Passthrough != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return routeAuth{}, field, authExactlyOne, ""
	}
	switch {
	case a.Passthrough != nil:
		return routeAuth{passthrough: true}, "", "", ""
	case a.Key != nil:
		if strings.TrimSpace(*a.Key) == "" {
			return routeAuth{}, field + ".key", "must not be empty", ""
		}
		if n := utf8.RuneCountInString(*a.Key); n > maxKeyChars {
			return routeAuth{}, field + ".key", fmt.Sprintf("is %d characters long, over the %d allowed (a longer credential belongs in a Secret: secretRef)", n, maxKeyChars), ""
		}
		v, msg := authorizationValue(*a.Key)
		if msg != "" {
			return routeAuth{}, field + ".key", msg, ""
		}
		return routeAuth{header: v}, "", "", ""
	}
	name := a.SecretRef.Name
	v, msg := t.secretAuthorization(ns, name)
	if msg != "" {
		return routeAuth{}, field + ".secretRef", msg, ""
	}
	if why := t.in.SecretErrors[key(ns, name)]; why != "" {
		stale = "Secret " + keyString(ns, name) + " could not be read (" + why + "): the copy read before is used"
	}
	return routeAuth{header: v}, "", "", stale
}

// authorizationValue is the Authorization value of a key (inline, or a Secret's): trimmed,
// "Bearer " in front of a bare key, refused when Envoy cannot take it as a header value
// (headerValueProblem: bytes that are not UTF-8, a NUL, CR or LF, too long): the route header
// would make Envoy refuse the RouteConfiguration of every port that routes to it, or, not UTF-8,
// keep the xDS server from encoding it. The message never holds the key.
func authorizationValue(key string) (string, string) {
	val := strings.TrimSpace(key)
	msg := headerValueProblem(val) // its bytes as given (trimmed)
	if !strings.Contains(val, " ") {
		val = "Bearer " + val
	}
	if msg == "" {
		msg = headerValueProblem(val) // its length as the header has it
	}
	if msg != "" {
		return "", "the value " + msg
	}
	return val, ""
}

// authOf returns the credential of a backendRef to tg at attachment a: its AgentgatewayBackend's
// own spec.policies.auth, else the spec.backend.auth of the most specific level that sets one
// (backend, rule, route, listener, Gateway), within a level the oldest valid policy's, as JWT
// authentication is taken (merge); the newer ones there are told in their status (authWinner).
// An invalid policy at any level makes the rule answer 500
// (merge), so its auth never applies. A Gateway's or listener's policy applies only to the routes
// of its own namespace (the Gateway's): another namespace's route chooses its backend, which could
// be a host its owner controls, and must not get the Gateway owner's key or, with passthrough,
// the callers' tokens; the policy is told (policyInfo.authOtherNS). Route, rule and backend
// policies are in their target's namespace, and a backend's policy's credential reaches that
// backend only. A policy whose auth the backend's own overrides is told so
// in its status (policyInfo.authOverridden).
func (t *translation) authOf(a attachment, tg *target) routeAuth {
	var own *backendInfo
	if tg.backend != "" {
		ns, name, _ := strings.Cut(tg.backend, "/")
		if bi := t.backends[key(ns, name)]; bi != nil && bi.auth.set() {
			own = bi
		}
	}
	if !t.policyAuths {
		if own != nil {
			return own.auth
		}
		return routeAuth{}
	}
	levels := t.levels(a)
	routeNS, _, _ := strings.Cut(a.route, "/")
	for l := len(levels) - 1; l >= 0; l-- {
		pi := authSetter(levels[l])
		switch {
		case pi == nil:
			continue
		case l <= levelListener && pi.p.Namespace != routeNS:
			// A Gateway's or listener's credential, or its callers' tokens, would go to a backend
			// that another namespace's route chooses: not applied there (the policy's status says so)
			t.mergeMu.Lock()
			if pi.authOtherNS == nil {
				pi.authOtherNS = map[string]bool{}
			}
			pi.authOtherNS[KindHTTPRoute+" "+a.route] = true
			t.mergeMu.Unlock()
			continue
		case own != nil:
			where := KindAgentgatewayBackend + " " + own.key
			t.mergeMu.Lock()
			if !slices.Contains(pi.authOverridden, where) {
				pi.authOverridden = append(pi.authOverridden, where)
			}
			t.mergeMu.Unlock()
			return own.auth
		}
		return *pi.auth
	}
	if own != nil {
		return own.auth
	}
	return routeAuth{}
}

// authSetter returns the policy whose spec.backend.auth a level of the index sets: the oldest
// valid one that sets one, or nil.
func authSetter(level []*policyInfo) *policyInfo {
	for _, pi := range level {
		if !pi.invalid && pi.auth != nil {
			return pi
		}
	}
	return nil
}
