package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/translator"
)

// gatewayKey names a Gateway.
type gatewayKey = types.NamespacedName

// writeStatus writes the translated status of every object whose status differs from what the
// API server holds. Route parents and policy ancestors of other controllers are kept. planes
// holds the data plane state of each served Gateway (when the controller deploys them).
func (p *Provider) writeStatus(ctx context.Context, snap *snapshot, out *translator.Output, planes map[gatewayKey]dataPlaneState) {
	now := metav1.Now()
	ctrl := gwv1.GatewayController(p.opts.ControllerName)
	st := out.Status
	res := snap.resources
	for _, c := range res.GatewayClasses {
		want, ok := st.GatewayClasses[c.Name]
		if !ok {
			continue
		}
		next := want.DeepCopy()
		next.Conditions = mergeConditions(c.Status.Conditions, next.Conditions, ctrl, now)
		if equality.Semantic.DeepEqual(c.Status, *next) {
			continue
		}
		obj := c.DeepCopy()
		obj.Status = *next
		p.updateStatus(ctx, obj)
	}
	for _, g := range res.Gateways {
		key := client.ObjectKeyFromObject(g)
		var next gwv1.GatewayStatus
		if want, ok := st.Gateways[key]; ok {
			next = gatewayStatus(g.Status, want, g.Spec.Addresses, gatewayService(res.Services, key), planes, p.opts.DataPlane != nil, key, ctrl, now)
		} else {
			// Not served (any more): what mcpgate wrote there goes; the class's controller owns
			// the status now.
			if g.DeletionTimestamp != nil {
				continue
			}
			var err error
			if next, err = withoutOwnStatus(g, statusManager(p.opts.ControllerName)); err != nil {
				p.log.Error("read status ownership", "object", key.String(), "error", err)
				continue
			}
		}
		if equality.Semantic.DeepEqual(g.Status, next) {
			continue
		}
		obj := g.DeepCopy()
		obj.Status = next
		p.updateStatus(ctx, obj)
	}
	for _, r := range res.HTTPRoutes {
		var want []gwv1.RouteParentStatus
		if s := st.HTTPRoutes[client.ObjectKeyFromObject(r)]; s != nil {
			want = s.Parents
		}
		next := mergeParents(r.Status.Parents, want, ctrl, now)
		if equality.Semantic.DeepEqual(r.Status.Parents, next) {
			continue
		}
		obj := r.DeepCopy()
		obj.Status.Parents = next
		p.updateStatus(ctx, obj)
	}
	for _, b := range res.Backends {
		want, ok := st.Backends[client.ObjectKeyFromObject(b)]
		if !ok {
			continue
		}
		next := v1alpha1.AgentgatewayBackendStatus{Conditions: mergeConditions(b.Status.Conditions, want.Conditions, ctrl, now)}
		if equality.Semantic.DeepEqual(b.Status, next) {
			continue
		}
		obj := b.DeepCopy()
		obj.Status = next
		p.updateStatus(ctx, obj)
	}
	policyStatus := func(kind string, obj client.Object, have gwv1.PolicyStatus) (gwv1.PolicyStatus, bool) {
		var want []gwv1.PolicyAncestorStatus
		if s := st.Policies[translator.ObjectKey{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}]; s != nil {
			want = s.Ancestors
		}
		next := gwv1.PolicyStatus{Ancestors: mergeAncestors(have.Ancestors, want, ctrl, now)}
		return next, !equality.Semantic.DeepEqual(have, next)
	}
	for _, pol := range res.Policies {
		if pol.Kind != "" && pol.Kind != translator.KindAgentgatewayPolicy {
			continue // the enterprise kind, below
		}
		if next, changed := policyStatus(translator.KindAgentgatewayPolicy, pol, pol.Status); changed {
			obj := pol.DeepCopy()
			obj.Status = next
			p.updateStatus(ctx, obj)
		}
	}
	for _, pol := range res.BackendTLSPolicies {
		if next, changed := policyStatus(translator.KindBackendTLSPolicy, pol, pol.Status); changed {
			obj := pol.DeepCopy()
			obj.Status = next
			p.updateStatus(ctx, obj)
		}
	}
	for _, pol := range snap.enterprise {
		if next, changed := policyStatus(translator.KindEnterpriseAgentgatewayPolicy, pol, pol.Status); changed {
			obj := pol.DeepCopy()
			obj.Status = next
			p.updateStatus(ctx, obj)
		}
	}
}

// updateStatus writes obj's status. A conflict (the cache was behind) asks for another pass.
func (p *Provider) updateStatus(ctx context.Context, obj client.Object) {
	err := p.client.Status().Update(ctx, obj, client.FieldOwner(statusManager(p.opts.ControllerName)))
	switch {
	case err == nil:
		p.log.Debug("status written", "kind", fmt.Sprintf("%T", obj), "object", client.ObjectKeyFromObject(obj).String())
	case apierrors.IsConflict(err):
		p.trigger()
	case apierrors.IsNotFound(err):
	default:
		p.log.Error("write status", "kind", fmt.Sprintf("%T", obj), "object", client.ObjectKeyFromObject(obj).String(), "error", err)
	}
}

// mergeConditions returns the conditions have becomes when the controller ctrl writes want, as
// meta.SetStatusCondition would: a condition of want replaces the one of its type in place,
// keeping its lastTransitionTime when its status is the same (now otherwise); a condition of a
// type the controller writes (translator.OwnsCondition) that want lacks goes (stale: e.g.
// PartiallyInvalid once every rule is valid); a new one comes last, in want's order. Conditions
// of other types stay as they are, in their place: Gateway API's "Implementations MUST NOT remove
// or reorder Conditions that they are not directly responsible for" (policy controllers add
// theirs to Gateways and route parents). Conditions left as they were give have's list again, so
// an unchanged status is not written again.
func mergeConditions(have, want []metav1.Condition, ctrl gwv1.GatewayController, now metav1.Time) []metav1.Condition {
	var out []metav1.Condition
	placed := make([]bool, len(want))
	put := func(j int, old *metav1.Condition) {
		c := want[j]
		c.LastTransitionTime = now
		if old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		out = append(out, c)
		placed[j] = true
	}
	for i := range have {
		h := &have[i]
		j := slices.IndexFunc(want, func(c metav1.Condition) bool { return c.Type == h.Type })
		switch {
		case j >= 0 && !placed[j]:
			put(j, h)
		case translator.OwnsCondition(string(ctrl), h.Type):
			// stale, or a repeat of a type already placed
		default:
			out = append(out, *h)
		}
	}
	for j := range want {
		if !placed[j] {
			put(j, nil)
		}
	}
	return out
}

// maxParents and maxAncestors are the most entries the API server takes in a route's
// status.parents and a policy's status.ancestors (Gateway API's MaxItems).
const (
	maxParents   = 32
	maxAncestors = 16
)

// mergeParents keeps the parents of other controllers and replaces this controller's with want.
func mergeParents(have, want []gwv1.RouteParentStatus, ctrl gwv1.GatewayController, now metav1.Time) []gwv1.RouteParentStatus {
	return mergeOwned(have, want, ctrl, now, maxParents, func(p *gwv1.RouteParentStatus) (gwv1.GatewayController, any, *[]metav1.Condition) {
		return p.ControllerName, p.ParentRef, &p.Conditions
	})
}

// mergeAncestors keeps the ancestors of other controllers and replaces this controller's with
// want.
func mergeAncestors(have, want []gwv1.PolicyAncestorStatus, ctrl gwv1.GatewayController, now metav1.Time) []gwv1.PolicyAncestorStatus {
	return mergeOwned(have, want, ctrl, now, maxAncestors, func(p *gwv1.PolicyAncestorStatus) (gwv1.GatewayController, any, *[]metav1.Condition) {
		return p.ControllerName, p.AncestorRef, &p.Conditions
	})
}

// mergeOwned merges status entries that several controllers share (route parents, policy
// ancestors): the entries of other controllers are kept as they are, this controller's are
// replaced by want, each keeping the condition times of the entry with the same reference.
// Every entry keeps its place (an entry of want that is new comes last), so that controllers
// that merge alike do not reorder each other's lists at every write; this controller's entries
// past max, the list's limit, are left out. fields returns an entry's controller, its
// reference and its conditions. The result is never nil: route parents and policy ancestors are
// required lists, which the API server refuses as null (an object that lost its last mcpgate
// parent gets an empty list).
func mergeOwned[T any](have, want []T, ctrl gwv1.GatewayController, now metav1.Time, max int, fields func(*T) (gwv1.GatewayController, any, *[]metav1.Condition)) []T {
	out := make([]T, 0, len(have)+len(want))
	placed := make([]bool, len(want))
	// put appends want[j], with the condition times of old (nil: none).
	put := func(j int, old []metav1.Condition) {
		w := want[j]
		_, _, conds := fields(&w)
		*conds = mergeConditions(old, *conds, ctrl, now) // a new slice: want's stay as they are
		out = append(out, w)
		placed[j] = true
	}
	others := 0
	for i := range have {
		c, hr, hc := fields(&have[i])
		if c != ctrl {
			out = append(out, have[i])
			others++
			continue
		}
		for j := range want {
			if _, wr, _ := fields(&want[j]); !placed[j] && reflect.DeepEqual(hr, wr) {
				put(j, *hc)
				break
			}
		}
	}
	for j := range want {
		if !placed[j] {
			put(j, nil)
		}
	}
	for i := len(out) - 1; len(out) > max && i >= 0; i-- {
		if c, _, _ := fields(&out[i]); c == ctrl {
			out = slices.Delete(out, i, i+1)
		}
	}
	return out
}

// withoutOwnStatus returns the status of a Gateway that mcpgate does not serve, less what mcpgate
// wrote there while it served it and nobody changed since, as the Gateway's managedFields tell
// (the status subresource's fields owned by manager, the controller's statusManager): its
// conditions, addresses and listener entries. A condition or listener entry another controller wrote over, even in part, is theirs
// and stays. A Gateway left without conditions gets the API server's defaults (Accepted and
// Programmed Unknown, "Waiting for controller"), which carry no observedGeneration and are not
// taken for mcpgate's.
func withoutOwnStatus(g *gwv1.Gateway, manager string) (gwv1.GatewayStatus, error) {
	owned, err := ownedStatus(g, manager)
	if err != nil || owned == nil {
		return g.Status, err
	}
	next := *g.Status.DeepCopy()
	status := fieldpath.Path{field("status")}
	next.Conditions = slices.DeleteFunc(next.Conditions, func(c metav1.Condition) bool {
		return ownsCondition(owned, append(status.Copy(), field("conditions")), c)
	})
	if owned.Has(append(status.Copy(), field("addresses"))) {
		next.Addresses = nil
	}
	next.Listeners = slices.DeleteFunc(next.Listeners, func(l gwv1.ListenerStatus) bool {
		entry := append(status.Copy(), field("listeners"), keyed("name", string(l.Name)))
		if !owned.Has(append(entry.Copy(), field("attachedRoutes"))) || !owned.Has(append(entry.Copy(), field("supportedKinds"))) {
			return false
		}
		for _, c := range l.Conditions {
			if !ownsCondition(owned, append(entry.Copy(), field("conditions")), c) {
				return false
			}
		}
		return true
	})
	return next, nil
}

// statusManager is the field manager of the status written by the controller of controllerName:
// the name itself (a Gateway API controllerName is a domain-prefixed path), or, when longer than
// a field manager may be (128 characters), FieldOwner and a hash of it.
func statusManager(controllerName string) string {
	if len(controllerName) <= 128 {
		return controllerName
	}
	sum := sha256.Sum256([]byte(controllerName))
	return FieldOwner + "-" + hex.EncodeToString(sum[:8])
}

// ownedStatus returns the status fields of obj that manager wrote and that nobody changed since
// (the API server moves a field to whoever changes it); nil when there are none.
func ownedStatus(obj metav1.Object, manager string) (*fieldpath.Set, error) {
	var owned *fieldpath.Set
	for _, e := range obj.GetManagedFields() {
		if e.Manager != manager || e.Subresource != "status" || e.FieldsV1 == nil {
			continue
		}
		set := &fieldpath.Set{}
		if err := set.FromJSON(e.FieldsV1.GetRawReader()); err != nil {
			return nil, fmt.Errorf("managedFields of %s: %w", manager, err)
		}
		if owned == nil {
			owned = set
		} else {
			owned = owned.Union(set)
		}
	}
	return owned, nil
}

// ownsCondition reports whether every field of condition c in the list at path list is owned:
// mcpgate wrote it and nobody changed it since. Conditions without observedGeneration are never
// mcpgate's (it always sets it).
func ownsCondition(owned *fieldpath.Set, list fieldpath.Path, c metav1.Condition) bool {
	if c.ObservedGeneration == 0 {
		return false
	}
	entry := append(list, keyed("type", c.Type))
	for _, f := range []string{"status", "reason", "message", "observedGeneration", "lastTransitionTime"} {
		if !owned.Has(append(entry.Copy(), field(f))) {
			return false
		}
	}
	return true
}

// field is the path element of a field name.
func field(name string) fieldpath.PathElement { return fieldpath.PathElement{FieldName: &name} }

// keyed is the path element of a list entry whose key field name has value v.
func keyed(name, v string) fieldpath.PathElement {
	return fieldpath.PathElement{Key: &value.FieldList{{Name: name, Value: value.NewValueInterface(v)}}}
}

// gatewayService returns the Service that exposes a Gateway: the one in its namespace labelled
// with its name, preferring the one the controller made.
func gatewayService(services []*corev1.Service, gw gatewayKey) *corev1.Service {
	var found *corev1.Service
	for _, s := range services {
		if s.Namespace != gw.Namespace || s.Labels[LabelGatewayName] != gw.Name {
			continue
		}
		if s.Labels[LabelManagedBy] == ManagedByValue {
			return s
		}
		if found == nil {
			found = s
		}
	}
	return found
}

// hasAll reports whether have holds every address of requested (of the same type; IP addresses
// compared as addresses, a requested address without a type being an IP address).
func hasAll(have []gwv1.GatewayStatusAddress, requested []gwv1.GatewaySpecAddress) bool {
	typeOf := func(t *gwv1.AddressType) gwv1.AddressType {
		if t == nil {
			return gwv1.IPAddressType
		}
		return *t
	}
	same := func(typ gwv1.AddressType, a, b string) bool {
		if typ == gwv1.IPAddressType {
			x, err1 := netip.ParseAddr(a)
			y, err2 := netip.ParseAddr(b)
			return err1 == nil && err2 == nil && x == y
		}
		return strings.EqualFold(a, b)
	}
	for _, r := range requested {
		if !slices.ContainsFunc(have, func(h gwv1.GatewayStatusAddress) bool {
			return typeOf(h.Type) == typeOf(r.Type) && same(typeOf(r.Type), h.Value, r.Value)
		}) {
			return false
		}
	}
	return true
}

// serviceAddresses returns a Service's load balancer addresses, or its cluster IPs while it has
// none.
func serviceAddresses(s *corev1.Service) []gwv1.GatewayStatusAddress {
	if s == nil {
		return nil
	}
	ip, host := gwv1.IPAddressType, gwv1.HostnameAddressType
	var out []gwv1.GatewayStatusAddress
	for _, in := range s.Status.LoadBalancer.Ingress {
		switch {
		case in.IP != "":
			out = append(out, gwv1.GatewayStatusAddress{Type: &ip, Value: in.IP})
		case in.Hostname != "":
			out = append(out, gwv1.GatewayStatusAddress{Type: &host, Value: in.Hostname})
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, c := range s.Spec.ClusterIPs {
		if c != "" && c != corev1.ClusterIPNone {
			out = append(out, gwv1.GatewayStatusAddress{Type: &ip, Value: c})
		}
	}
	return out
}

// gatewayStatus is the translator's Gateway status with the addresses of the Gateway's Service.
// Programmed stays True only when the data plane was applied and its Deployment has an available
// replica (when the controller deploys it), and the Service has an address. requested are the
// Gateway's spec.addresses: the translator, which knows no Service, finds them unusable
// (AddressNotUsable); the Gateway is Programmed all the same when its Service has every one. One
// without a value, which mcpgate does not assign, is AddressNotAssigned and stays so.
func gatewayStatus(have gwv1.GatewayStatus, want *gwv1.GatewayStatus, requested []gwv1.GatewaySpecAddress, svc *corev1.Service, planes map[gatewayKey]dataPlaneState, deploys bool, key gatewayKey, ctrl gwv1.GatewayController, now metav1.Time) gwv1.GatewayStatus {
	next := *want.DeepCopy()
	next.Addresses = serviceAddresses(svc)
	if c := meta.FindStatusCondition(next.Conditions, string(gwv1.GatewayConditionProgrammed)); c != nil &&
		c.Reason == string(gwv1.GatewayReasonAddressNotUsable) && hasAll(next.Addresses, requested) {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, string(gwv1.GatewayReasonProgrammed), ""
	}
	if c := meta.FindStatusCondition(next.Conditions, string(gwv1.GatewayConditionProgrammed)); c != nil && c.Status == metav1.ConditionTrue {
		plane, planned := planes[key]
		switch {
		case deploys && !planned:
			c.Status, c.Reason, c.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonPending), "the data plane is not deployed yet"
		case deploys && plane.err != nil:
			c.Status, c.Reason, c.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalid), "data plane: "+plane.err.Error()
		case deploys && plane.unavailable != "":
			c.Status, c.Reason, c.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonNoResources), plane.unavailable
		case len(next.Addresses) == 0 && svc == nil:
			c.Status, c.Reason = metav1.ConditionFalse, string(gwv1.GatewayReasonAddressNotAssigned)
			c.Message = fmt.Sprintf("no Service in namespace %s has the label %s=%s", key.Namespace, LabelGatewayName, key.Name)
		case len(next.Addresses) == 0:
			c.Status, c.Reason = metav1.ConditionFalse, string(gwv1.GatewayReasonAddressNotAssigned)
			c.Message = fmt.Sprintf("Service %s/%s has no address yet", svc.Namespace, svc.Name)
		}
	}
	next.Conditions = mergeConditions(have.Conditions, next.Conditions, ctrl, now)
	for i := range next.Listeners {
		var old []metav1.Condition
		for _, h := range have.Listeners {
			if h.Name == next.Listeners[i].Name {
				old = h.Conditions
			}
		}
		next.Listeners[i].Conditions = mergeConditions(old, next.Listeners[i].Conditions, ctrl, now)
	}
	return next
}
