// HTTPRoute attachment, the second route stage (attachRoutes): each compiled route is attached
// to the listeners its parentRefs select (hostnames intersected, allowedRoutes checked), gets its
// parent statuses, has its Envoy routes built there (buildRule, routeenvoy.go), and is then
// registered on its Gateways' builds (build.go) in age order.

package translator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// attachRoutes attaches every route and builds its Envoy routes on its own (forEach), then
// records the routes' statuses and registers the routes on their Gateways, each in age order;
// the two passes write apart and run concurrently.
func (t *translation) attachRoutes(compiled []compiledRoute) {
	forEach(len(compiled), func(i int) { t.attachRoute(&compiled[i]) })
	concurrently(func() {
		for i := range compiled {
			t.routeStatus(&compiled[i])
		}
	}, func() {
		for i := range compiled {
			t.registerRoute(&compiled[i])
		}
	})
}

// routeStatus records an attached route's status, refusals and warnings.
func (t *translation) routeStatus(cr *compiledRoute) {
	r := cr.r
	t.st.add(cr.problems)
	if len(cr.status.Parents) > 0 {
		t.st.HTTPRoutes[key(r.Namespace, r.Name)] = cr.status
		t.st.warnings = append(t.st.warnings, cr.warnings...)
	}
}

// attachRoute attaches a route to the listeners its parentRefs select, builds the Envoy routes
// of its rules there and its status.
func (t *translation) attachRoute(cr *compiledRoute) {
	r := cr.r
	var conds []metav1.Condition // the conditions of a single parent: allocated with the status
	if len(r.Spec.ParentRefs) == 1 {
		b := &routeStatusBlock{}
		cr.status, b.st.Parents, conds = &b.st, b.parents[:0], b.conds[:0]
	} else {
		cr.status = &gwv1.HTTPRouteStatus{RouteStatus: gwv1.RouteStatus{Parents: make([]gwv1.RouteParentStatus, 0, len(r.Spec.ParentRefs))}}
	}
	for i, pr := range r.Spec.ParentRefs {
		ps, ok := t.attachParent(cr, i, pr, conds)
		if ok {
			cr.status.Parents = append(cr.status.Parents, ps)
		}
	}
	for i := range cr.uses {
		t.buildRule(&cr.uses[i])
	}
}

// routeStatusBlock holds the status of a route with one parentRef (most routes).
type routeStatusBlock struct {
	st      gwv1.HTTPRouteStatus
	parents [1]gwv1.RouteParentStatus
	conds   [routeParentConditions]metav1.Condition
}

// routeParentConditions is how many conditions a route's parent status has at most: Accepted,
// ResolvedRefs, maybe PartiallyInvalid.
const routeParentConditions = 3

// registerRoute registers an attached route: its listeners' route counts, the Gateways on its
// backends' targets, and on its Gateways its clusters, policies and Envoy routes. Routes register
// in age order, so that these lists do not depend on the schedule.
func (t *translation) registerRoute(cr *compiledRoute) {
	for _, li := range cr.attached {
		li.attached++
	}
	for i := range cr.uses {
		u := &cr.uses[i]
		c, gb := u.c, u.gi.build
		for _, ref := range c.refs {
			if ref.tg.backend != "" {
				ref.tg.gateways.add(u.gi)
			}
			t.notePortGateway(ref.tg, u.gi)
		}
		for _, tg := range c.btlsRefused {
			t.notePortGateway(tg, u.gi)
		}
		switch {
		case u.bad || c.failMsg != "": // answers 500
		case c.redirect != nil:
			gb.addPolicy(u.base)
		default:
			for i, ref := range c.refs {
				gb.addTarget(ref.tg)
				gb.addPolicy(u.merges[i])
			}
			if u.bridged() {
				gb.addTarget(c.bridge) // the mux reaches the target through the mux upstream listener
			}
		}
		// a match's routes (several for a bridged rule) in order, with the match's precedence:
		// the stable sort keeps them together and in order
		per := len(u.routes) / len(c.matches)
		for k := range c.matches {
			for _, h := range u.hosts {
				vb := gb.vhost(u.li, h)
				for _, rt := range u.routes[k*per : (k+1)*per] {
					vb.add(rt, &c.matches[k].prec)
				}
			}
		}
	}
}

// parentGateway returns the Gateway a parentRef of a route in namespace ns names; ok is false
// when it names another kind.
func parentGateway(ns string, pr *gwv1.ParentReference) (gw nsName, ok bool) {
	if (pr.Group != nil && *pr.Group != gatewayGroup) || (pr.Kind != nil && *pr.Kind != KindGateway) {
		return nsName{}, false
	}
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	return key(ns, string(pr.Name)), true
}

// attachParent attaches the route to the listeners one parentRef selects and returns that
// parent's status; ok is false when the parent is not this controller's. The conditions go to
// conds, or to a new slice when conds is nil.
func (t *translation) attachParent(cr *compiledRoute, i int, pr gwv1.ParentReference, conds []metav1.Condition) (gwv1.RouteParentStatus, bool) {
	r := cr.r
	gw, ok := parentGateway(r.Namespace, &pr)
	if !ok {
		return gwv1.RouteParentStatus{}, false
	}
	gen := r.Generation
	if conds == nil {
		conds = make([]metav1.Condition, 0, routeParentConditions)
	}
	ps := gwv1.RouteParentStatus{ParentRef: pr, ControllerName: gwv1.GatewayController(t.opts.ControllerName), Conditions: conds}
	field := func() string { return "spec.parentRefs[" + strconv.Itoa(i) + "]" } // built only for errors
	gi := t.gateways[gw]
	if gi == nil {
		if t.allGateways[gw] != nil || t.opts.RequireGatewayClass {
			return ps, false // another controller's Gateway, or unknowable in a cluster
		}
		msg := fmt.Sprintf("Gateway %s not found", keyString(gw.Namespace, gw.Name))
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field(), msg)
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent), msg, gen))
		ps.Conditions = appendRouteRefConditions(ps.Conditions, cr, false, gen)
		return ps, true
	}
	if len(cr.badHosts) > 0 {
		// The whole route is refused, not only its invalid hostnames: without them a route
		// could serve hosts it never named (a route whose only hostname is dropped serves every
		// host of its listeners), and the API server refuses such a route as a whole (the
		// CRD's pattern), so a Gateway API user expects none of it in force. Nothing else
		// changes: other routes on the listener keep their hosts.
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue),
			"invalid hostnames, the route is not served: "+strings.Join(cr.badHosts, "; "), gen))
		ps.Conditions = appendRouteRefConditions(ps.Conditions, cr, false, gen)
		return ps, true
	}
	var candidates []*listenerInfo
	for _, li := range gi.listeners {
		if pr.SectionName != nil && string(*pr.SectionName) != string(li.l.Name) {
			continue
		}
		if pr.Port != nil && *pr.Port != li.l.Port {
			continue
		}
		candidates = append(candidates, li)
	}
	reason, msg := "", ""
	n := 0
	var idle []string // the listeners attached to that are not accepted: "NAME (REASON)"
	if len(candidates) == 0 {
		reason, msg = string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Gateway %s has no listener matching the sectionName and port", gi.key)
	} else {
		allowed := 0
		for _, li := range candidates {
			if !t.admits(li, r.Namespace) {
				continue
			}
			allowed++
			hosts, ok := intersectHostnames(li, r.Spec.Hostnames)
			if !ok {
				continue
			}
			n++
			if !li.ok {
				idle = append(idle, fmt.Sprintf("%s (%s)", li.l.Name, li.reason))
			}
			if cr.allInvalid() || slices.Contains(cr.attached, li) {
				continue
			}
			cr.attached = append(cr.attached, li) // counted, accepted or not
			if li.ok {
				t.addRoutes(gi, li, cr, hosts)
			}
		}
		switch {
		case n > 0:
		case allowed == 0:
			reason, msg = string(gwv1.RouteReasonNotAllowedByListeners), fmt.Sprintf("no listener of Gateway %s admits this route (protocol, allowedRoutes)", gi.key)
		default:
			reason, msg = string(gwv1.RouteReasonNoMatchingListenerHostname), fmt.Sprintf("no hostname of the route matches a listener hostname of Gateway %s", gi.key)
		}
	}
	switch {
	case n > 0 && cr.allInvalid():
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field(), "not attached: no rule can be honoured (see the errors of spec.rules)")
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue),
			"no rule can be honoured: "+strings.Join(cr.invalidMsgs, "; "), gen))
	case n > 0:
		// Attached, so Accepted (the listeners' attachedRoutes count only accepted routes), even
		// on listeners that are not accepted, which serve nothing: the message says so.
		note := cr.warningMessage()
		if len(idle) > 0 {
			if note != "" {
				note += "; "
			}
			note += plural(idle, "listener %s is not accepted and serves", "listeners %s are not accepted and serve") +
				" none of this route until fixed (see the Gateway's listener conditions)"
		}
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), note, gen))
		if len(idle) < n {
			cr.info.gateways.add(gi)
		}
	default:
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field(), msg)
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, reason, msg, gen))
	}
	ps.Conditions = appendRouteRefConditions(ps.Conditions, cr, n > 0 && !cr.allInvalid(), gen)
	return ps, true
}

// warningMessage joins the route's warnings as "field: message; ..." ("" when none).
func (cr *compiledRoute) warningMessage() string {
	if len(cr.warnings) == 0 {
		return ""
	}
	msgs := make([]string, len(cr.warnings))
	for i, w := range cr.warnings {
		msgs[i] = w.Field + ": " + w.Message
	}
	return strings.Join(msgs, "; ")
}

// appendRouteRefConditions appends the ResolvedRefs and PartiallyInvalid conditions of a route's
// parent; accepted tells whether that parent accepted the route. PartiallyInvalid goes only on a
// parent that did: Gateway API, "This condition MUST NOT be set if a Route is fully valid, fully
// invalid, or not accepted."
func appendRouteRefConditions(out []metav1.Condition, cr *compiledRoute, accepted bool, gen int64) []metav1.Condition {
	if cr.refReason != "" {
		out = append(out, condition(string(gwv1.RouteConditionResolvedRefs), false, cr.refReason, strings.Join(cr.refMsgs, "; "), gen))
	} else {
		out = append(out, condition(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", gen))
	}
	if accepted && len(cr.badRules) > 0 && !cr.allInvalid() {
		// Gateway API: the message starts with "Dropped Rule"; the dropped rules answer 500
		// rather than let their requests reach other routes.
		out = append(out, condition(string(gwv1.RouteConditionPartiallyInvalid), true, string(gwv1.RouteReasonUnsupportedValue),
			fmt.Sprintf("Dropped Rule %s (their requests answer 500): %s", strings.Join(cr.badRules, ", "), strings.Join(cr.invalidMsgs, "; ")), gen))
	}
	return out
}

// intersectHostnames returns the hostnames a route serves on a listener ("" = any), and false
// when none intersect.
func intersectHostnames(li *listenerInfo, route []gwv1.Hostname) ([]string, bool) {
	if len(route) == 0 {
		return li.hosts, true
	}
	listener := li.hostname
	var out []string
	seen := map[string]bool{}
	add := func(h string) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, rh := range route {
		h := strings.ToLower(string(rh))
		switch {
		case listener == "" || h == listener:
			add(h)
		case strings.HasPrefix(listener, "*.") && hostMatches(listener, h):
			add(h)
		case strings.HasPrefix(h, "*.") && hostMatches(h, listener):
			add(listener)
		}
	}
	return out, len(out) > 0
}

// hostMatches reports whether h (a host or a narrower wildcard) falls under wildcard w.
func hostMatches(w, h string) bool {
	suffix := w[1:] // ".example.com"
	return strings.HasSuffix(h, suffix) && len(h) > len(suffix)
}

// addRoutes attaches a route's rules to one listener.
func (t *translation) addRoutes(gi *gatewayInfo, li *listenerInfo, cr *compiledRoute, hosts []string) {
	for i := range cr.rules {
		if c := &cr.rules[i]; len(c.matches) > 0 {
			cr.uses = append(cr.uses, ruleUse{gi: gi, li: li, cr: cr, c: c, hosts: hosts})
		}
	}
}

// routeHostnameProblem says why h is not a Gateway API Hostname (HTTPRoute spec.hostnames), or
// "": an RFC 1123 DNS name, optionally with a leading "*." wildcard label, not an IP address (the
// CRD's pattern and its documentation; its MaxLength 253). Envoy would take most such names as
// virtual host domains (a space, a port, an empty label, "*" alone, which matches every host)
// and route them as written, which is not what the route means to a Gateway API user. Letter case
// is let pass, unlike the CRD's pattern: hostnames compare case-insensitively and the translator
// lowers them.
func routeHostnameProblem(h string) string {
	name, wildcard := strings.CutPrefix(h, "*.")
	if msg := preciseHostnameProblem(name); msg != "" {
		if wildcard {
			return "after its *. wildcard: " + msg
		}
		return msg
	}
	if strings.Trim(name, "0123456789.") == "" && isIP(name) { // a DNS name here: an IPv4 address is all digits and dots
		return fmt.Sprintf("%q is an IP address: Gateway API hostnames are DNS names (without one, any host is served)", h)
	}
	return ""
}

// preciseHostnameProblem says why h is not a Gateway API PreciseHostname (URLRewrite and
// RequestRedirect hostname; spec.hostnames without the wildcard), or "": at most 253 bytes of
// dot-separated labels of 1 to 63 letters, digits and "-", neither first nor last in a label
// (RFC 1123). Letter case is let pass (see routeHostnameProblem).
func preciseHostnameProblem(h string) string {
	switch {
	case h == "":
		return "is empty: a DNS name is required"
	case len(h) > 253:
		return fmt.Sprintf("is %d bytes long, over the 253 of a DNS name", len(h))
	}
	i := -1
	for label := range strings.SplitSeq(h, ".") {
		i++
		switch {
		case label == "":
			return fmt.Sprintf("%q has an empty label: write a DNS name such as example.com (no leading, trailing or doubled dot)", h)
		case len(label) > 63:
			return fmt.Sprintf("label %d is %d bytes long, over the 63 of a DNS label", i+1, len(label))
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("%q: label %q starts or ends with -", h, label)
		}
		for j := 0; j < len(label); j++ {
			if c := label[j]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				what := strconv.QuoteRune(rune(c))
				if c >= utf8.RuneSelf {
					what = "a non-ASCII character (write an IDN in punycode, xn--...)"
				}
				return fmt.Sprintf("%q is not a DNS name: %s is not allowed (letters, digits, - and dots only; no port, scheme, path or wildcard)", h, what)
			}
		}
	}
	return ""
}
