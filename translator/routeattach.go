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
		ps.Conditions = appendRouteRefConditions(ps.Conditions, cr, gen)
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
			if cr.allInvalid() || slices.Contains(cr.attached, li) {
				continue
			}
			cr.attached = append(cr.attached, li)
			t.addRoutes(gi, li, cr, hosts)
		}
		switch {
		case n > 0:
		case allowed == 0:
			reason, msg = string(gwv1.RouteReasonNotAllowedByListeners), fmt.Sprintf("no listener of Gateway %s admits this route (allowedRoutes, or listeners not accepted)", gi.key)
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
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), cr.warningMessage(), gen))
		cr.info.gateways.add(gi)
	default:
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field(), msg)
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, reason, msg, gen))
	}
	ps.Conditions = appendRouteRefConditions(ps.Conditions, cr, gen)
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

// appendRouteRefConditions appends the ResolvedRefs and PartiallyInvalid conditions of a route.
func appendRouteRefConditions(out []metav1.Condition, cr *compiledRoute, gen int64) []metav1.Condition {
	if cr.refReason != "" {
		out = append(out, condition(string(gwv1.RouteConditionResolvedRefs), false, cr.refReason, strings.Join(cr.refMsgs, "; "), gen))
	} else {
		out = append(out, condition(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", gen))
	}
	if len(cr.badRules) > 0 && !cr.allInvalid() {
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
