package translator

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

type nsName = types.NamespacedName

// translation is the state of one Translate call.
type translation struct {
	in   *Resources
	opts Options
	out  *Output
	st   *Status
	chk  *Cache // Options.Cache, or one for this translation
	xds  *xdsCommon

	classes      map[string]*gwv1.GatewayClass
	gateways     map[nsName]*gatewayInfo // served gateways
	allGateways  map[nsName]*gwv1.Gateway
	served       []*gatewayInfo // served gateways, oldest first
	routes       []*routeInfo   // oldest first (once compileRoutes sorted them)
	routeByName  map[nsName]*routeInfo
	backends     map[nsName]*backendInfo
	services     map[nsName]*corev1.Service
	servicesInNS map[string][]*corev1.Service
	slices       map[nsName][]*discoveryv1.EndpointSlice // by Service
	secrets      map[nsName]*corev1.Secret
	configMaps   map[nsName]*corev1.ConfigMap
	namespaces   map[string]*corev1.Namespace
	grants       map[string][]*gwv1.ReferenceGrant // by namespace
	svcTargets   map[string]*target                // Service backendRef targets by cluster name
	svcMu        sync.Mutex                        // guards svcTargets (routes compile concurrently)
	btlsList     []*btlsPolicy                     // BackendTLSPolicies, oldest first
	btlsByPort   map[btlsPort]*btlsPolicy          // the policy that applies to each Service port
	btlsGateways map[btlsPort]*gatewayList         // the Gateways whose routes reach each such port
	policies     *policyIndex
	policyList   []*policyInfo            // every policy, oldest first
	merged       map[string]*mergedPolicy // by policy name
	mergeMu      sync.Mutex               // guards merged (routes attach concurrently)
	rateLimits   bool                     // some policy sets traffic.rateLimit (rateLimitOf)
	policyAuths  bool                     // some policy sets backend.auth (authOf)
}

func newTranslation(in *Resources, opts Options) *translation {
	st := newStatus(in)
	t := &translation{
		in:           in,
		opts:         opts,
		out:          &Output{Gateways: make(map[string]*GatewayConfig, len(in.Gateways))},
		classes:      make(map[string]*gwv1.GatewayClass, len(in.GatewayClasses)),
		gateways:     make(map[nsName]*gatewayInfo, len(in.Gateways)),
		allGateways:  make(map[nsName]*gwv1.Gateway, len(in.Gateways)),
		routes:       make([]*routeInfo, 0, len(in.HTTPRoutes)),
		routeByName:  make(map[nsName]*routeInfo, len(in.HTTPRoutes)),
		backends:     make(map[nsName]*backendInfo, len(in.Backends)),
		services:     make(map[nsName]*corev1.Service, len(in.Services)),
		servicesInNS: map[string][]*corev1.Service{},
		slices:       make(map[nsName][]*discoveryv1.EndpointSlice, len(in.Services)),
		secrets:      make(map[nsName]*corev1.Secret, len(in.Secrets)),
		configMaps:   make(map[nsName]*corev1.ConfigMap, len(in.ConfigMaps)),
		namespaces:   make(map[string]*corev1.Namespace, len(in.Namespaces)),
		grants:       map[string][]*gwv1.ReferenceGrant{},
		svcTargets:   map[string]*target{},
		btlsByPort:   map[btlsPort]*btlsPolicy{},
		btlsGateways: map[btlsPort]*gatewayList{},
		merged:       make(map[string]*mergedPolicy, len(in.Policies)),
	}
	t.st = &st
	if t.chk = opts.Cache; t.chk == nil {
		t.chk = NewCache()
	}
	return t
}

// run translates in stages. A stage that translates objects one by one does so on every CPU
// (forEach); stages that do not depend on each other run concurrently.
func (t *translation) run() {
	checked := t.chk.precheck(t.in.Policies) // CEL and JWKS on the other CPUs meanwhile
	t.index()
	t.xds = newXDSCommon(t.opts)
	t.translateClasses()
	t.selectGateways()
	t.resolveBackendTLS()
	t.translateBackends()
	var compiled []compiledRoute
	concurrently( // neither reads what the other writes
		func() { compiled = t.compileRoutes() },
		func() { checked(); t.policies = t.indexPolicies() })
	t.attachRoutes(compiled)
	foreign := t.foreignBackends()
	concurrently(func() { t.policyStatuses(foreign) }, t.finishGateways) // the same: they read what is done by now
	t.backendTLSStatuses()
	t.affectedConditions(foreign)
	t.out.Status = *t.st
	t.chk.done()
}

// index builds the lookup maps. Objects without a name are skipped; nil entries are ignored.
func (t *translation) index() {
	for _, c := range t.in.GatewayClasses {
		if c != nil && c.Name != "" {
			t.classes[c.Name] = c
		}
	}
	for _, g := range t.in.Gateways {
		if g != nil && g.Name != "" {
			t.allGateways[key(g.Namespace, g.Name)] = g
		}
	}
	infos := make([]routeInfo, 0, len(t.in.HTTPRoutes)) // one allocation for all
	for _, r := range t.in.HTTPRoutes {
		if r != nil && r.Name != "" {
			infos = append(infos, routeInfo{r: r, key: keyString(r.Namespace, r.Name)})
			ri := &infos[len(infos)-1]
			t.routes = append(t.routes, ri)
			t.routeByName[key(r.Namespace, r.Name)] = ri
		}
	}
	for _, s := range t.in.Services {
		if s != nil && s.Name != "" {
			t.services[key(s.Namespace, s.Name)] = s
			t.servicesInNS[s.Namespace] = append(t.servicesInNS[s.Namespace], s)
		}
	}
	for ns := range t.servicesInNS {
		l := t.servicesInNS[ns]
		slices.SortFunc(l, func(a, b *corev1.Service) int { return strings.Compare(a.Name, b.Name) })
	}
	for _, s := range t.in.EndpointSlices {
		if s == nil {
			continue
		}
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc != "" {
			k := key(s.Namespace, svc)
			t.slices[k] = append(t.slices[k], s)
		}
	}
	for _, s := range t.in.Secrets {
		if s != nil && s.Name != "" {
			t.secrets[key(s.Namespace, s.Name)] = s
		}
	}
	for _, c := range t.in.ConfigMaps {
		if c != nil && c.Name != "" {
			t.configMaps[key(c.Namespace, c.Name)] = c
		}
	}
	for _, n := range t.in.Namespaces {
		if n != nil && n.Name != "" {
			t.namespaces[n.Name] = n
		}
	}
	for _, g := range t.in.ReferenceGrants {
		if g != nil {
			t.grants[g.Namespace] = append(t.grants[g.Namespace], g)
		}
	}
}

// granted reports whether a ReferenceGrant in toNS lets an HTTPRoute of fromNS refer to the
// object group/kind/name there.
func (t *translation) granted(fromNS, toNS, group, kind, name string) bool {
	return t.grantedFrom(KindHTTPRoute, fromNS, toNS, group, kind, name)
}

// grantedFrom reports whether a ReferenceGrant in toNS lets an object of fromKind (of Gateway
// API's group: an HTTPRoute's backendRefs, a Gateway's certificateRefs) in fromNS refer to the
// object group/kind/name there.
func (t *translation) grantedFrom(fromKind, fromNS, toNS, group, kind, name string) bool {
	return slices.ContainsFunc(t.grants[toNS], func(g *gwv1.ReferenceGrant) bool {
		return grantPermits(g, fromKind, fromNS, group, kind, name)
	})
}

// Granted reports whether one of grants, in namespace toNS, lets an object of Gateway API's kind
// fromKind in fromNS refer to the object group/kind/name in toNS: what the translation checks,
// for a provider that reads referenced objects (a Gateway's certificate Secrets) only when
// permitted.
func Granted(grants []*gwv1.ReferenceGrant, fromKind, fromNS, toNS, group, kind, name string) bool {
	return slices.ContainsFunc(grants, func(g *gwv1.ReferenceGrant) bool {
		return g != nil && g.Namespace == toNS && grantPermits(g, fromKind, fromNS, group, kind, name)
	})
}

// grantPermits reports whether ReferenceGrant g lets an object of fromKind in fromNS refer to
// group/kind/name in g's namespace.
func grantPermits(g *gwv1.ReferenceGrant, fromKind, fromNS, group, kind, name string) bool {
	from := slices.ContainsFunc(g.Spec.From, func(f gwv1.ReferenceGrantFrom) bool {
		return string(f.Group) == gatewayGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
	})
	return from && slices.ContainsFunc(g.Spec.To, func(to gwv1.ReferenceGrantTo) bool {
		return string(to.Group) == group && string(to.Kind) == kind && (to.Name == nil || *to.Name == "" || string(*to.Name) == name)
	})
}

func key(ns, name string) nsName { return nsName{Namespace: ns, Name: name} }

func keyString(ns, name string) string { return ns + "/" + name }

// compareAge orders objects by creation time, then "{namespace}/{name}" (Gateway API conflict
// resolution: the oldest wins, then "the Route appearing first in alphabetical order by
// {namespace}/{name}"; compareNsName).
func compareAge(a, b *metav1.ObjectMeta) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return compareNsName(a.Namespace, a.Name, b.Namespace, b.Name)
}

// compareNsName compares "{ans}/{aname}" with "{bns}/{bname}" as strings, without joining them:
// Gateway API's alphabetical order by "{namespace}/{name}", in which "a-b/a" comes before "a/z"
// ('-' < '/'), unlike an order by namespace, then name.
func compareNsName(ans, aname, bns, bname string) int {
	if ans == bns {
		return strings.Compare(aname, bname)
	}
	n := min(len(ans), len(bns))
	if c := strings.Compare(ans[:n], bns[:n]); c != 0 {
		return c
	}
	// One namespace starts the other: the shorter one's "/" meets the longer one's next byte,
	// never a "/" (namespaces have none).
	if len(ans) < len(bns) {
		return cmp.Compare('/', bns[n])
	}
	return cmp.Compare(ans[n], '/')
}

// ageKey is what compareAge reads of an object, and a kind that breaks its ties.
type ageKey struct {
	created        time.Time
	ns, name, kind string
}

// sortByAge sorts list oldest first: by compareAge of meta's ObjectMeta, then by meta's kind. It
// copies the keys out and sorts indices to them: a comparison reads two keys that lie side by
// side instead of two objects through their pointers, whose cache misses were most of the sort of
// thousands of routes or policies. The order is slices.SortFunc's with that comparison, ties
// included (the same comparisons make the same moves).
func sortByAge[T any](list []T, meta func(T) (*metav1.ObjectMeta, string)) {
	keys := make([]ageKey, len(list))
	order := make([]int32, len(list))
	for i, x := range list {
		m, kind := meta(x)
		keys[i] = ageKey{created: m.CreationTimestamp.Time, ns: m.Namespace, name: m.Name, kind: kind}
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int {
		a, b := &keys[i], &keys[j]
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		if c := compareNsName(a.ns, a.name, b.ns, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.kind, b.kind)
	})
	sorted := make([]T, len(list))
	for i, k := range order {
		sorted[i] = list[k]
	}
	copy(list, sorted)
}

// routeInfo is an HTTPRoute during translation.
type routeInfo struct {
	r        *gwv1.HTTPRoute
	key      string      // "NS/NAME"
	gateways gatewayList // the served Gateways it is attached to
}

// gatewayList is a list of Gateways, each once, in the order added. Most routes and targets are
// on one Gateway: the first is held in place, not allocated.
type gatewayList struct {
	list  []*gatewayInfo
	first [1]*gatewayInfo
}

// add adds gi to the list, once.
func (l *gatewayList) add(gi *gatewayInfo) {
	switch {
	case len(l.list) == 0:
		l.first[0] = gi
		l.list = l.first[:] // appending the next one copies it
	case !slices.Contains(l.list, gi):
		l.list = append(l.list, gi)
	}
}

// mergedPolicy is one distinct merge of policies: its resource and whether an invalid policy
// took part (then the routes under it answer 500).
type mergedPolicy struct {
	policy  *policyv1.Policy
	invalid []string // sources of invalid policies that apply
}

// name is the name of the merged policy resource, "" for none.
func (m *mergedPolicy) name() string {
	if m == nil || m.policy == nil {
		return ""
	}
	return m.policy.Name
}
