package kubernetes_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/translator"
)

// changeLog is a log handler that records the changes the controller logs as causing a pass
// (message "change", at debug level) as "EVENT KIND OBJECT", and passes its other records of
// level Warn and above to the test log.
type changeLog struct {
	rec  *changeRecords
	next slog.Handler
}

type changeRecords struct {
	mu   sync.Mutex
	list []string
}

func newChangeLog(t *testing.T) changeLog {
	return changeLog{rec: &changeRecords{}, next: slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})}
}

func (h changeLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelDebug }

func (h changeLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "change" {
		if h.next.Enabled(ctx, r.Level) {
			return h.next.Handle(ctx, r)
		}
		return nil
	}
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	h.rec.list = append(h.rec.list, attrs["event"]+" "+attrs["kind"]+" "+attrs["object"])
	return nil
}

func (h changeLog) WithAttrs(as []slog.Attr) slog.Handler {
	return changeLog{rec: h.rec, next: h.next.WithAttrs(as)}
}

func (h changeLog) WithGroup(name string) slog.Handler {
	return changeLog{rec: h.rec, next: h.next.WithGroup(name)}
}

// count returns how many times change ("EVENT KIND OBJECT") was logged.
func (h changeLog) count(change string) int {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	n := 0
	for _, c := range h.rec.list {
		if c == change {
			n++
		}
	}
	return n
}

// waitFor waits until change was logged. The informer of a kind hands its changes to the
// controller's handler one at a time, in order: every change of that kind made before it has
// been handled (and, when it caused a pass, logged) by then.
func (h changeLog) waitFor(t *testing.T, change string) {
	t.Helper()
	eventually(t, "change logged: "+change, func() error {
		if h.count(change) == 0 {
			return fmt.Errorf("not logged")
		}
		return nil
	})
}

// routeParentCondition returns an error unless HTTPRoute key's parent status for Gateway parent,
// written by the controller ctrlName, has condition typ with status and its message holds msg.
func routeParentCondition(t *testing.T, key types.NamespacedName, ctrlName, parent, typ string, status metav1.ConditionStatus, msg string) error {
	t.Helper()
	r := get(t, key, &gwv1.HTTPRoute{})
	for _, p := range r.Status.Parents {
		if string(p.ControllerName) != ctrlName || string(p.ParentRef.Name) != parent {
			continue
		}
		c := meta.FindStatusCondition(p.Conditions, typ)
		if c == nil || c.Status != status || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("HTTPRoute %s parent %s: %s is %+v, want %s with %q", key, parent, typ, c, status, msg)
		}
		return nil
	}
	return fmt.Errorf("HTTPRoute %s has no parent %s of %s: %+v", key, parent, ctrlName, r.Status.Parents)
}

// selectingGateway is the manifest of Gateway ns/selecting of class ns, whose listener admits
// the routes of the namespaces labelled team=a.
func selectingGateway(ns string) []byte {
	return []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: selecting, namespace: ` + ns + `}
spec:
  gatewayClassName: ` + ns + `
  listeners:
  - {name: http, port: 8081, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}}
`)
}

// TestServiceNamespaceChanges: the Service and Namespace informers are wired to their filters. A
// change of a Service nothing reads, a Namespace label change while nothing selects namespaces by
// label and a Namespace change that leaves its labels as they were cause no pass; the change of a
// Service a route names and a Namespace label change that a Gateway's allowedRoutes selector reads
// each cause one, and the status shows what it read (no full pass runs: the resync is an hour).
func TestServiceNamespaceChanges(t *testing.T) {
	const ctrlName, ns, team, marker = "test.mcpgate.dev/changes", "changes", "changes-team", "changes-marker"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: `+team+`}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: `+ns+`}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: `+ns+`}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: `+ns+`}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: team, namespace: `+team+`}
spec:
  parentRefs: [{name: selecting, namespace: `+ns+`}]
  rules: [{matches: [{path: {type: PathPrefix, value: /team}}]}]
`), "apply", "-f", "-")
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	changes := newChangeLog(t)
	// Its own namespaces only: no other test's Gateway selects namespaces by label.
	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName, Namespaces: []string{ns, team},
		ResyncPeriod: time.Hour, Logger: slog.New(changes)})
	webRoute := types.NamespacedName{Namespace: ns, Name: "web"}
	eventually(t, "route web resolved", func() error {
		return routeParentCondition(t, webRoute, ctrlName, "gw", "ResolvedRefs", metav1.ConditionTrue, "")
	})

	// Services: other is read by nothing, web by the route.
	mustKubectl(t, nil, "-n", ns, "annotate", "service", "other", "touched=1")
	mustKubectl(t, nil, "-n", ns, "patch", "service", "web", "--type=json", "-p", `[{"op":"replace","path":"/spec/ports/0/port","value":81}]`)
	eventually(t, "route web refused for the port its Service lost", func() error {
		return routeParentCondition(t, webRoute, ctrlName, "gw", "ResolvedRefs", metav1.ConditionFalse, "has no port 80")
	})
	changes.waitFor(t, "update Service "+ns+"/web")
	if n := changes.count("update Service " + ns + "/other"); n != 0 {
		t.Errorf("a change of a Service no object reads caused %d passes, want none", n)
	}

	// Namespaces: a label change while no Gateway or backend selects namespaces by label.
	mustKubectl(t, nil, "label", "namespace", team, "team=b")
	mustKubectl(t, selectingGateway(ns), "apply", "-f", "-")
	teamRoute := types.NamespacedName{Namespace: team, Name: "team"}
	eventually(t, "route team not allowed", func() error {
		return routeParentCondition(t, teamRoute, ctrlName, "selecting", "Accepted", metav1.ConditionFalse, "")
	})
	// Now a Gateway selects namespaces by label: a change that keeps the labels causes no pass,
	// one of the labels does.
	mustKubectl(t, nil, "annotate", "namespace", team, "touched=1")
	mustKubectl(t, nil, "label", "--overwrite", "namespace", team, "team=a")
	eventually(t, "route team allowed by the namespace's new label", func() error {
		return routeParentCondition(t, teamRoute, ctrlName, "selecting", "Accepted", metav1.ConditionTrue, "")
	})
	// A namespace made after them marks that the Namespace informer handled the changes above.
	mustKubectl(t, nil, "create", "namespace", marker)
	changes.waitFor(t, "add Namespace "+marker)
	if n := changes.count("update Namespace " + team); n != 1 {
		t.Errorf("the namespace's three changes caused %d passes, want one (its label change once a Gateway selects namespaces by label)", n)
	}
}

// TestServiceNamespaceMatters: which Service and Namespace changes can change the translation,
// asked of a controller whose cache holds the routes, backends and Gateways that name Services or
// select namespaces.
func TestServiceNamespaceMatters(t *testing.T) {
	const ctrlName, ns, far = "test.mcpgate.dev/matters", "matters", "matters-far"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: `+far+`}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: `+ns+`}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {name: web, port: 80}
    - {name: api, namespace: `+far+`, port: 80}
    - {name: not-a-service, group: agentgateway.dev, kind: AgentgatewayBackend}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: static, namespace: `+ns+`}
spec:
  mcp:
    targets: [{name: s, static: {host: fetcher.`+far+`.svc.cluster.local, port: 80}}]
`), "apply", "-f", "-")
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	ctrl := startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName, Namespaces: []string{ns, far},
		ResyncPeriod: time.Hour, DataPlane: testDataPlane(nil)})
	eventually(t, "the controller's first pass", func() error {
		if !ctrl.prov.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	svc := func(namespace, name string, labels map[string]string, appProtocol string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		if appProtocol != "" {
			s.Spec.Ports[0].AppProtocol = &appProtocol
		}
		return s
	}
	for _, c := range []struct {
		what string
		obj  any
		want bool
	}{
		{"a route's backendRef", svc(ns, "web", nil, ""), true},
		{"a route's backendRef to another namespace", svc(far, "api", nil, ""), true},
		{"an MCP static target's host", svc(far, "fetcher", nil, ""), true},
		{"a port of MCP appProtocol", svc(far, "tools", nil, translator.AppProtocolMCP), true},
		{"a Gateway's own Service", svc(ns, "envoy", map[string]string{kubernetes.LabelGatewayName: "gw"}, ""), true},
		{"a Service mcpgate made", svc(far, "old-gw", map[string]string{kubernetes.LabelManagedBy: kubernetes.ManagedByValue}, ""), true},
		{"the name of a Gateway's data plane", svc(ns, "gw", nil, ""), true},
		{"a deletion seen late", toolscache.DeletedFinalStateUnknown{Key: ns + "/unused"}, true},
		{"read by nothing", svc(ns, "unused", nil, ""), false},
		{"the name of a backendRef of another kind", svc(ns, "not-a-service", nil, ""), false},
		{"a backendRef's name in another namespace", svc(far, "web", nil, ""), false},
	} {
		if got := kubernetes.ServiceMatters(ctrl.prov, c.obj); got != c.want {
			t.Errorf("Service %s: matters %v, want %v", c.what, got, c.want)
		}
	}

	nsObj := func(labels map[string]string, annotations map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: far, Labels: labels, Annotations: annotations}}
	}
	before, relabelled, annotated := nsObj(map[string]string{"team": "a"}, nil), nsObj(map[string]string{"team": "b"}, nil), nsObj(map[string]string{"team": "a"}, map[string]string{"x": "1"})
	matters := func(want bool) func() error {
		return func() error {
			if got := kubernetes.NamespaceChangeMatters(ctrl.prov, before, relabelled); got != want {
				return fmt.Errorf("a namespace's label change: matters %v, want %v", got, want)
			}
			if got := kubernetes.NamespaceChangeMatters(ctrl.prov, before, annotated); got {
				return fmt.Errorf("a namespace change that keeps its labels: matters %v, want false", got)
			}
			if got := kubernetes.NamespaceMatters(ctrl.prov, before); got != want {
				return fmt.Errorf("a namespace made or deleted: matters %v, want %v", got, want)
			}
			return nil
		}
	}
	if err := matters(false)(); err != nil {
		t.Errorf("nothing selects namespaces by label: %v", err)
	}
	// An MCP selector target that selects namespaces by label, then a Gateway's allowedRoutes.
	selectorBackend := []byte(`apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: selector, namespace: ` + ns + `}
spec:
  mcp:
    targets: [{name: s, selector: {namespaces: {matchLabels: {team: a}}, services: {matchLabels: {app: x}}}}]
`)
	mustKubectl(t, selectorBackend, "apply", "-f", "-")
	eventually(t, "a backend selects namespaces by label", matters(true))
	mustKubectl(t, selectorBackend, "delete", "-f", "-")
	eventually(t, "nothing selects namespaces by label again", matters(false))
	mustKubectl(t, selectingGateway(ns), "apply", "-f", "-")
	eventually(t, "a Gateway selects namespaces by label", matters(true))
	if !kubernetes.NamespaceMatters(ctrl.prov, toolscache.DeletedFinalStateUnknown{Key: far}) {
		t.Error("a namespace deletion seen late does not matter")
	}
}
