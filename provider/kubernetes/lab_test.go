package kubernetes_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/api/v1alpha1/enterprise"
	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

const (
	labNS         = "agentgateway-system"
	labGateway    = labNS + "/agentgateway"
	ourController = translator.DefaultControllerName
	// The controller's identity from deploy/controller/rbac.yaml.
	controllerSA = "system:serviceaccount:mcpgate-system:mcpgate-controller"

	listenerName = labGateway + "/8080"
	// labRoute starts the names of the lab rule's routes: its SSE target is bridged, so the
	// match has its legacy routes to the target and its route to the mux (labRoutes).
	labRoute     = "httproute/agentgateway-system/mcp/rule/0/match/0"
	labCluster   = "agentgatewaybackend/agentgateway-system/mcp-backend/mcp-target"
	jwtPolicy    = "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-jwt-auth"
	bothPolicies = jwtPolicy + "+EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac"
)

// labRoutes are the names of the lab rule's routes, in order: the SSE target's legacy stream and
// messages (one per session parameter spelling), then the mux, which bridges the rest.
func labRoutes() []string {
	return []string{labRoute + "/sse-stream", labRoute + "/sse-messages-sessionId", labRoute + "/sse-messages-sessionid",
		labRoute + "/sse-messages-session_id", labRoute + "/bridge"}
}

// labFiles are the lab's manifests: the example Gateway (created by the lab's earlier
// challenges) and steps 2, 3, 6 and 9 as the lab applies them, byte for byte.
func labFiles(repo string) []string {
	return []string{
		filepath.Join(repo, "examples", "mcp-connectivity", "gateway.yaml"),
		filepath.Join("testdata", "lab", "step2.yaml"),
		filepath.Join("testdata", "lab", "step3.yaml"),
		filepath.Join("testdata", "lab", "step6.yaml"),
		filepath.Join("testdata", "lab", "step9.yaml"),
	}
}

// installDeploy installs deploy/ as docs/kubernetes.md says; with dryRun, first as its check
// says: deploy/'s namespace, then a server-side dry run (which creates nothing: the namespaced
// objects need their namespace). Every step is idempotent: tests that run the controller with
// deploy/'s RBAC call it.
func installDeploy(t *testing.T, dryRun bool) {
	t.Helper()
	deploy := filepath.Join(testCluster.repo, "deploy")
	if dryRun {
		mustKubectl(t, nil, "apply", "--server-side", "-f", filepath.Join(deploy, "controller", "namespace.yaml"))
		mustKubectl(t, nil, "apply", "--dry-run=server", "-k", deploy)
	}
	mustKubectl(t, nil, "apply", "--server-side", "-k", deploy)
}

// controllerConfig is the admin config impersonating the controller's ServiceAccount, so the
// controller runs with exactly the RBAC of deploy/.
func controllerConfig() *rest.Config {
	cfg := rest.CopyConfig(testCluster.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: controllerSA,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:mcpgate-system", "system:authenticated"},
	}
	return cfg
}

// probeUserAgent is the user agent of probeClient: checkRBAC tells the tests' own requests as
// the controller's ServiceAccount from the controller's.
const probeUserAgent = "mcpgate-tests/probe"

// probeClient is a client of the controller's ServiceAccount (controllerConfig) for the tests' own
// requests, such as the writes that probe deploy/'s admission policies.
func probeClient(t *testing.T) client.Client {
	t.Helper()
	cfg := controllerConfig()
	cfg.UserAgent = probeUserAgent
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// labCA is the xDS CA of the lab's controllers, made as `mcpgate controller --xds-tls` does:
// EnsureCA with the controller's ServiceAccount.
var labCA = sync.OnceValues(func() (*pki.CA, error) {
	c, err := client.New(controllerConfig(), client.Options{})
	if err != nil {
		return nil, err
	}
	return kubernetes.EnsureCA(context.Background(), c, "mcpgate-system")
})

// labOptions are the controller's options in these tests: deploy/'s flags (xDS over mutual TLS),
// a short Lease. deploy/ must be installed (the CA Secret is made with its RBAC).
func labOptions(t *testing.T) kubernetes.Options {
	t.Helper()
	ca, err := labCA()
	if err != nil {
		t.Fatalf("xDS CA: %v", err)
	}
	return kubernetes.Options{
		GatewayClasses:          []string{"enterprise-agentgateway", "other-class"},
		LeaderElection:          true,
		LeaderElectionNamespace: "mcpgate-system",
		LeaseDuration:           3 * time.Second,
		DataPlane: &kubernetes.DataPlane{
			XDSAddress:   "mcpgate-controller.mcpgate-system.svc:18000",
			ExtProcImage: "ghcr.io/mcpgate/mcpgate:test",
			XDSCA:        ca,
		},
	}
}

func get[T client.Object](t *testing.T, key types.NamespacedName, obj T) T {
	t.Helper()
	if err := testCluster.client.Get(context.Background(), key, obj); err != nil {
		t.Fatalf("get %T %s: %v", obj, key, err)
	}
	return obj
}

// condition returns an error unless conds has typ with status and, when reason is set, reason;
// and observedGeneration equal to generation.
func condition(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string, generation int64) error {
	c := meta.FindStatusCondition(conds, typ)
	switch {
	case c == nil:
		return fmt.Errorf("no %s condition in %+v", typ, conds)
	case c.Status != status || (reason != "" && c.Reason != reason):
		return fmt.Errorf("%s is %s/%s (%q), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
	case c.ObservedGeneration != generation:
		return fmt.Errorf("%s observedGeneration %d, want %d", typ, c.ObservedGeneration, generation)
	case c.LastTransitionTime.IsZero():
		return fmt.Errorf("%s has no lastTransitionTime", typ)
	}
	return nil
}

// ourParent returns the route's parent status written by this controller for parent name.
func ourParent(r *gwv1.HTTPRoute, name string) (*gwv1.RouteParentStatus, error) {
	for i, p := range r.Status.Parents {
		if p.ControllerName == ourController && string(p.ParentRef.Name) == name {
			return &r.Status.Parents[i], nil
		}
	}
	return nil, fmt.Errorf("HTTPRoute %s/%s has no parent %s from %s: %+v", r.Namespace, r.Name, name, ourController, r.Status.Parents)
}

// TestLab installs deploy/, applies the lab's manifests with kubectl, runs the controller with
// deploy/'s RBAC and follows what it serves over ADS and writes as status through updates,
// invalid objects, deletions, restarts and leader changes.
func TestLab(t *testing.T) {
	ctx := context.Background()
	repo := testCluster.repo
	files := labFiles(repo)

	installDeploy(t, true)

	mustKubectl(t, nil, "create", "namespace", labNS)
	for _, f := range files[:3] {
		applyFile(t, f)
	}

	top := t
	ctrl := startController(t, top, controllerConfig(), labOptions(t))
	ads := watchADS(t, ctrl, labGateway)

	t.Run("serves the lab route", func(t *testing.T) {
		eventually(t, "listener, route and cluster served", func() error {
			if err := ads.hasNames(resourcev3.ListenerType, listenerName); err != nil {
				return err
			}
			// the listener's, and the bootstrap's mux upstream listener's (always sent)
			if err := ads.hasNames(resourcev3.RouteType, listenerName, contract.MuxUpstreamRoutes); err != nil {
				return err
			}
			return ads.hasNames(resourcev3.ClusterType, labCluster)
		})
		rc, _ := ads.get(resourcev3.RouteType, listenerName)
		if got, want := routeNames(rc.(*routev3.RouteConfiguration)), append([]string{translator.RefuseAmbiguousPathsRoute}, labRoutes()...); !slices.Equal(got, want) {
			t.Errorf("routes %q, want %q", got, want)
		}
		// The extproc sidecar is ready (and Envoy starts) once it has a policy set, even empty.
		eventually(t, "an empty policy set", func() error {
			if names := ads.names(contract.PolicyTypeURL); len(names) != 0 || !ads.received(contract.PolicyTypeURL) {
				return fmt.Errorf("policies %q (received: %v), want an empty set before steps 6 and 9", names, ads.received(contract.PolicyTypeURL))
			}
			return nil
		})
	})

	t.Run("status", func(t *testing.T) {
		// The Gateway is Programmed once its data plane has an available replica.
		markAvailable(t, types.NamespacedName{Namespace: labNS, Name: "agentgateway"}, 1)
		eventually(t, "status written", func() error {
			for _, name := range []string{"enterprise-agentgateway", "mcpgate"} {
				gc := get(t, types.NamespacedName{Name: name}, &gwv1.GatewayClass{})
				if err := condition(gc.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", gc.Generation); err != nil {
					return fmt.Errorf("GatewayClass %s: %w", name, err)
				}
			}
			gw := get(t, types.NamespacedName{Namespace: labNS, Name: "agentgateway"}, &gwv1.Gateway{})
			for _, typ := range []string{"Accepted", "Programmed"} {
				if err := condition(gw.Status.Conditions, typ, metav1.ConditionTrue, typ, gw.Generation); err != nil {
					return fmt.Errorf("Gateway: %w", err)
				}
			}
			svc := get(t, types.NamespacedName{Namespace: labNS, Name: "agentgateway"}, &corev1.Service{})
			if len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != svc.Spec.ClusterIP || svc.Spec.ClusterIP == "" {
				return fmt.Errorf("Gateway addresses %+v, want the ClusterIP %q of its Service", gw.Status.Addresses, svc.Spec.ClusterIP)
			}
			if len(gw.Status.Listeners) != 1 || gw.Status.Listeners[0].AttachedRoutes != 1 {
				return fmt.Errorf("Gateway listeners %+v, want http with 1 attached route", gw.Status.Listeners)
			}
			rt := get(t, types.NamespacedName{Namespace: labNS, Name: "mcp"}, &gwv1.HTTPRoute{})
			p, err := ourParent(rt, "agentgateway")
			if err != nil {
				return err
			}
			for _, typ := range []string{"Accepted", "ResolvedRefs"} {
				if err := condition(p.Conditions, typ, metav1.ConditionTrue, typ, rt.Generation); err != nil {
					return fmt.Errorf("HTTPRoute parent: %w", err)
				}
			}
			be := get(t, types.NamespacedName{Namespace: labNS, Name: "mcp-backend"}, &v1alpha1.AgentgatewayBackend{})
			return condition(be.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", be.Generation)
		})
	})

	t.Run("data plane", func(t *testing.T) { checkDataPlane(t, labNS, "agentgateway", []int32{8080}) })

	t.Run("steps 6 and 9: policies", func(t *testing.T) {
		// Passes that change nothing (a namespace label) push no new version: each step below
		// adds exactly one.
		v0 := version(t, ctrl)
		mustKubectl(t, nil, "label", "namespace", labNS, "example.com/touched=1")
		applyFile(t, files[3])
		eventually(t, "JWT policy served", func() error { return ads.hasNames(contract.PolicyTypeURL, jwtPolicy) })
		if v := version(t, ctrl); v != v0+1 {
			t.Errorf("xDS version %d after step 6, want %d: a pass without a change pushed", v, v0+1)
		}
		applyFile(t, files[4])
		eventually(t, "both policies served", func() error { return ads.hasNames(contract.PolicyTypeURL, bothPolicies) })
		eventually(t, "policy status", func() error {
			for _, name := range []string{"mcp-jwt-auth", "mcp-rbac"} {
				pol := get(t, types.NamespacedName{Namespace: labNS, Name: name}, &enterprise.EnterpriseAgentgatewayPolicy{})
				if len(pol.Status.Ancestors) != 1 || pol.Status.Ancestors[0].ControllerName != ourController {
					return fmt.Errorf("policy %s ancestors %+v", name, pol.Status.Ancestors)
				}
				if err := condition(pol.Status.Ancestors[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted", pol.Generation); err != nil {
					return fmt.Errorf("policy %s: %w", name, err)
				}
			}
			// GEP-713: the targeted Gateway says which policies apply to it
			gw := get(t, types.NamespacedName{Namespace: labNS, Name: "agentgateway"}, &gwv1.Gateway{})
			const affected = "mcpgate.dev/EnterpriseAgentgatewayPolicyAffected"
			if err := condition(gw.Status.Conditions, affected, metav1.ConditionTrue, "PolicyAffected", gw.Generation); err != nil {
				return fmt.Errorf("Gateway: %w", err)
			}
			if c := meta.FindStatusCondition(gw.Status.Conditions, affected); c.Message != "applied here: EnterpriseAgentgatewayPolicy mcp-jwt-auth, mcp-rbac" {
				return fmt.Errorf("Gateway %s message %q", affected, c.Message)
			}
			return nil
		})
	})

	t.Run("same routes and policies as standalone", func(t *testing.T) {
		res, _, err := file.Load(files...)
		if err != nil {
			t.Fatalf("standalone load: %v", err)
		}
		want := translator.Translate(res, translator.Options{GatewayClassNames: labOptions(t).GatewayClasses}).NodeGroups()[labGateway]
		if want == nil {
			t.Fatal("standalone mode serves no gateway " + labGateway)
		}
		wantSets := map[string]map[string]proto.Message{}
		for typ, list := range want {
			wantSets[typ] = map[string]proto.Message{}
			for _, m := range list {
				wantSets[typ][resourceName(t, m)] = m
			}
		}
		eventually(t, "served = standalone", func() error {
			return diffSets(ads.all(), wantSets, resourcev3.RouteType, resourcev3.ClusterType, contract.PolicyTypeURL)
		})
	})

	t.Run("controller restart serves the same", func(t *testing.T) {
		var gw *gwv1.Gateway
		eventually(t, "Gateway programmed", func() error {
			gw = get(t, types.NamespacedName{Namespace: labNS, Name: "agentgateway"}, &gwv1.Gateway{})
			return condition(gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
		})
		before := ads.all()
		ctrl.stop(t)
		ctrl = startController(t, top, controllerConfig(), labOptions(t))
		again := watchADS(top, ctrl, labGateway)
		eventually(t, "same content after restart", func() error { return diffSets(again.all(), before, servedTypes...) })
		ads = again
		// The new leader's passes find every status current: the Gateway is not rewritten.
		touchAndWait(t, "FailOpen")
		if now := get(t, types.NamespacedName{Namespace: labNS, Name: "agentgateway"}, &gwv1.Gateway{}); now.ResourceVersion != gw.ResourceVersion {
			t.Errorf("Gateway rewritten after restart: resourceVersion %s -> %s\n%+v", gw.ResourceVersion, now.ResourceVersion, now.Status)
		}
	})

	t.Run("updates follow", func(t *testing.T) {
		// Another controller's parent entry, which mcpgate must keep when it rewrites its own.
		mustKubectl(t, nil, "-n", labNS, "patch", "httproute", "mcp", "--subresource=status", "--type=json", "-p",
			`[{"op":"add","path":"/status/parents/-","value":{"parentRef":{"name":"elsewhere"},"controllerName":"example.com/other-controller",`+
				`"conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}]`)
		mustKubectl(t, nil, "-n", labNS, "patch", "httproute", "mcp", "--type=json", "-p",
			`[{"op":"add","path":"/spec/rules/0/matches","value":[{"path":{"type":"PathPrefix","value":"/mcp"}}]}]`)
		eventually(t, "route match updated", func() error {
			m, ok := ads.get(resourcev3.RouteType, listenerName)
			if !ok {
				return fmt.Errorf("no route configuration")
			}
			r := firstRoute(m.(*routev3.RouteConfiguration))
			if r == nil || r.GetMatch().GetPathSeparatedPrefix() != "/mcp" && r.GetMatch().GetPrefix() != "/mcp" {
				return fmt.Errorf("route match %v, want prefix /mcp", r.GetMatch())
			}
			return nil
		})
		eventually(t, "route status follows the generation", func() error {
			rt := get(t, types.NamespacedName{Namespace: labNS, Name: "mcp"}, &gwv1.HTTPRoute{})
			p, err := ourParent(rt, "agentgateway")
			if err != nil {
				return err
			}
			if err := condition(p.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", rt.Generation); err != nil {
				return err
			}
			// Each entry keeps its place: ours first, the other controller's where it added it.
			if len(rt.Status.Parents) != 2 || rt.Status.Parents[1].ControllerName != "example.com/other-controller" {
				return fmt.Errorf("parents %+v, want the other controller's kept beside ours, in its place", rt.Status.Parents)
			}
			return nil
		})
	})

	t.Run("MCP selector targets from EndpointSlices", func(t *testing.T) { checkSelectorTargets(t, ads) })
	t.Run("invalid objects", func(t *testing.T) { checkInvalid(t, ads) })
	t.Run("GatewayClass by name", func(t *testing.T) { checkClassByName(t, ctrl) })
	t.Run("leader election", func(t *testing.T) { ctrl = checkLeaderElection(t, top, ctrl) })

	t.Run("deletions follow", func(t *testing.T) {
		ads := watchADS(t, ctrl, labGateway)
		eventually(t, "watch synced", func() error { return ads.hasNames(resourcev3.ListenerType, listenerName) })
		mustKubectl(t, nil, "-n", labNS, "delete", "eagpol", "mcp-rbac")
		eventually(t, "JWT policy alone", func() error { return ads.hasNames(contract.PolicyTypeURL, jwtPolicy) })
		mustKubectl(t, nil, "-n", labNS, "delete", "httproute", "mcp")
		eventually(t, "route and cluster removed", func() error {
			if err := ads.hasNames(resourcev3.ClusterType); err != nil {
				return err
			}
			m, ok := ads.get(resourcev3.RouteType, listenerName)
			if !ok {
				return fmt.Errorf("route configuration removed with its routes")
			}
			if names := routeNames(m.(*routev3.RouteConfiguration)); len(names) != 0 {
				return fmt.Errorf("routes %q remain", names)
			}
			return nil
		})
		dep := get(t, types.NamespacedName{Namespace: labNS, Name: "agentgateway"}, &appsv1.Deployment{})
		mustKubectl(t, nil, "-n", labNS, "delete", "gateway", "agentgateway")
		eventually(t, "gateway removed from xDS", func() error { return ads.hasNames(resourcev3.ListenerType) })
		// envtest runs no garbage collector: the controller deletes the data plane itself.
		eventually(t, "data plane deleted", func() error {
			var deps appsv1.DeploymentList
			if err := testCluster.client.List(ctx, &deps, client.InNamespace(labNS), client.MatchingLabels{kubernetes.LabelGatewayName: "agentgateway"}); err != nil {
				return err
			}
			var svcs corev1.ServiceList
			if err := testCluster.client.List(ctx, &svcs, client.InNamespace(labNS), client.MatchingLabels{kubernetes.LabelGatewayName: "agentgateway"}); err != nil {
				return err
			}
			var cms corev1.ConfigMapList
			if err := testCluster.client.List(ctx, &cms, client.InNamespace(labNS), client.MatchingLabels{kubernetes.LabelGatewayName: "agentgateway"}); err != nil {
				return err
			}
			if n := len(deps.Items) + len(svcs.Items) + len(cms.Items); n != 0 {
				return fmt.Errorf("%d data plane objects remain", n)
			}
			return nil
		})
		// The xDS certificate Secret is left to the garbage collector (which envtest does not run):
		// its owner is the deleted Deployment.
		sec := &corev1.Secret{}
		if err := testCluster.client.Get(ctx, types.NamespacedName{Namespace: labNS, Name: "agentgateway-xds-tls"}, sec); err != nil {
			t.Fatalf("Secret agentgateway-xds-tls: %v (the controller may not delete Secrets)", err)
		}
		checkOwnedByDeployment(t, sec, dep)
	})
}

// version is the xDS version the controller serves.
func version(t *testing.T, c *controller) int {
	t.Helper()
	v, err := strconv.Atoi(c.xds.Version())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// touchAndWait sets the lab backend's failureMode (a new generation) and waits until the leader
// has written the backend's status for it, so that every earlier pass is finished.
func touchAndWait(t *testing.T, failureMode string) {
	t.Helper()
	mustKubectl(t, nil, "-n", labNS, "patch", "agentgatewaybackend", "mcp-backend", "--type=merge", "-p",
		`{"spec":{"mcp":{"failureMode":"`+failureMode+`"}}}`)
	eventually(t, "backend status at the new generation", func() error {
		be := get(t, types.NamespacedName{Namespace: labNS, Name: "mcp-backend"}, &v1alpha1.AgentgatewayBackend{})
		return condition(be.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", be.Generation)
	})
}

// checkDataPlane checks the Deployment, Service and bootstrap ConfigMap of a Gateway.
func checkDataPlane(t *testing.T, ns, name string, ports []int32) {
	key := types.NamespacedName{Namespace: ns, Name: name}
	eventually(t, "data plane created", func() error {
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}} {
			if err := testCluster.client.Get(context.Background(), key, obj); err != nil {
				return err
			}
		}
		if err := testCluster.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name + "-bootstrap"}, &corev1.ConfigMap{}); err != nil {
			return err
		}
		// The Secret is stored before the Deployment, owned by the Gateway, and owned by the
		// Deployment once that exists.
		var sec corev1.Secret
		if err := testCluster.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name + "-xds-tls"}, &sec); err != nil {
			return err
		}
		return ownedByADeployment(&sec)
	})
	gw := get(t, key, &gwv1.Gateway{})
	dep := get(t, key, &appsv1.Deployment{})
	svc := get(t, key, &corev1.Service{})
	cm := get(t, types.NamespacedName{Namespace: ns, Name: name + "-bootstrap"}, &corev1.ConfigMap{})
	for _, obj := range []client.Object{dep, svc, cm} {
		if obj.GetLabels()[kubernetes.LabelManagedBy] != kubernetes.ManagedByValue || obj.GetLabels()[kubernetes.LabelGatewayName] != name {
			t.Errorf("%T labels %v", obj, obj.GetLabels())
		}
		refs := obj.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != gw.UID || refs[0].Kind != "Gateway" {
			t.Errorf("%T owner references %+v, want the Gateway", obj, refs)
		}
	}
	b, err := bootstrap.Parse([]byte(cm.Data[kubernetes.BootstrapKey]))
	if err != nil {
		t.Fatalf("bootstrap ConfigMap: %v", err)
	}
	if b.GetNode().GetCluster() != ns+"/"+name {
		t.Errorf("bootstrap node cluster %q, want %s/%s", b.GetNode().GetCluster(), ns, name)
	}
	// xDS over mutual TLS: the Gateway's client certificate in its Secret, issued by the CA for
	// this Gateway, mounted for both containers; Envoy's xDS cluster presents it.
	sec := get(t, types.NamespacedName{Namespace: ns, Name: name + "-xds-tls"}, &corev1.Secret{})
	if sec.Labels[kubernetes.LabelManagedBy] != kubernetes.ManagedByValue {
		t.Errorf("Secret %s-xds-tls: labels %v", name, sec.Labels)
	}
	checkOwnedByDeployment(t, sec, dep)
	ca, _ := labCA()
	if !ca.Current(sec.Data[corev1.TLSCertKey], time.Now()) {
		t.Errorf("Secret %s-xds-tls: the certificate is not the CA's", name)
	} else if block, _ := pem.Decode(sec.Data[corev1.TLSCertKey]); block != nil {
		cert, err := x509.ParseCertificate(block.Bytes)
		if gwName, gerr := pki.GatewayOf(cert); err != nil || gerr != nil || gwName != ns+"/"+name {
			t.Errorf("Secret %s-xds-tls: the certificate names %q (%v %v), want %s/%s", name, gwName, err, gerr, ns, name)
		}
	}
	var xdsCluster bool
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == contract.XDSCluster {
			xdsCluster = c.GetTransportSocket().GetName() == "envoy.transport_sockets.tls"
		}
	}
	if !xdsCluster {
		t.Errorf("the bootstrap's %s has no TLS transport socket", contract.XDSCluster)
	}
	// the mux and its upstream listener on the sockets the sidecar serves and dials (args below)
	var muxAt []string
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != contract.MuxCluster {
			continue
		}
		for _, l := range c.GetLoadAssignment().GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				muxAt = append(muxAt, e.GetEndpoint().GetAddress().GetPipe().GetPath())
			}
		}
	}
	if !slices.Equal(muxAt, []string{kubernetes.MuxSocket}) {
		t.Errorf("the bootstrap's %s is at %q, want one endpoint, the socket %s", contract.MuxCluster, muxAt, kubernetes.MuxSocket)
	}
	var listeners []string // NAME on SOCKET
	for _, l := range b.GetStaticResources().GetListeners() {
		listeners = append(listeners, l.GetName()+" on "+l.GetAddress().GetPipe().GetPath())
	}
	if want := contract.MuxUpstreamListener + " on " + kubernetes.MuxUpstreamSocket; !slices.Equal(listeners, []string{want}) {
		t.Errorf("the bootstrap's listeners %q, want %s", listeners, want)
	}
	pod := dep.Spec.Template.Spec
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "extproc" ||
		pod.InitContainers[0].RestartPolicy == nil || *pod.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("extproc is not a native sidecar: %+v", pod.InitContainers)
	}
	if args := strings.Join(pod.InitContainers[0].Args, " "); !strings.Contains(args, "--listen=unix://"+kubernetes.ExtProcSocket) || !strings.Contains(args, "--gateway="+ns+"/"+name) ||
		!strings.Contains(args, "--xds-tls-dir="+kubernetes.XDSTLSDir) ||
		!strings.Contains(args, "--mux-listen=unix://"+kubernetes.MuxSocket) || !strings.Contains(args, "--mux-upstream=unix://"+kubernetes.MuxUpstreamSocket) {
		t.Errorf("extproc args %q", args)
	}
	// The sidecar's /metrics, which Prometheus scrapes, adds Envoy's statistics from the admin
	// listener of this bootstrap, which stays on the pod's loopback.
	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	adminAddr := net.JoinHostPort(admin.GetAddress(), strconv.Itoa(int(admin.GetPortValue())))
	if ip := net.ParseIP(admin.GetAddress()); ip == nil || !ip.IsLoopback() {
		t.Errorf("the bootstrap's admin address %s is not on the pod's loopback", adminAddr)
	}
	if want := "--envoy-stats-url=http://" + adminAddr + "/stats/prometheus"; !slices.Contains(pod.InitContainers[0].Args, want) {
		t.Errorf("extproc args %q: want %s, the bootstrap's admin address", pod.InitContainers[0].Args, want)
	}
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == kubernetes.XDSTLSDir && m.ReadOnly }) {
			t.Errorf("container %s does not mount the xDS certificate at %s", c.Name, kubernetes.XDSTLSDir)
		}
	}
	if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == name+"-xds-tls" }) {
		t.Errorf("no volume of the Secret %s-xds-tls", name)
	}
	if dep.Spec.Template.Annotations[kubernetes.AnnotationXDSCertHash] == "" {
		t.Error("the pod template has no certificate hash: a renewed certificate would not roll the pods")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod may run as root: %+v", pod.SecurityContext)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("data plane pods get a service account token")
	}
	var got []int32
	for _, p := range svc.Spec.Ports {
		got = append(got, p.Port)
	}
	if !slices.Equal(got, ports) {
		t.Errorf("Service ports %v, want %v", got, ports)
	}
}

// checkOwnedByDeployment checks that obj's (a Secret's, the PodDisruptionBudget's) one owner is
// the live Deployment dep, as the Deployment's own owner reference is set (controller, no
// blockOwnerDeletion): the garbage collector deletes it with the data plane, and the controller
// never deletes it.
func checkOwnedByDeployment(t *testing.T, obj client.Object, dep *appsv1.Deployment) {
	t.Helper()
	depRefs := dep.GetOwnerReferences()
	if len(depRefs) != 1 {
		t.Fatalf("Deployment %s/%s owner references %+v", dep.Namespace, dep.Name, depRefs)
	}
	want := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID,
		Controller: depRefs[0].Controller, BlockOwnerDeletion: depRefs[0].BlockOwnerDeletion}
	if refs := obj.GetOwnerReferences(); len(refs) != 1 || !reflect.DeepEqual(refs[0], want) {
		t.Errorf("%T %s/%s owner references %s, want the Deployment %s", obj, obj.GetNamespace(), obj.GetName(), ownerRefs(refs), ownerRefs([]metav1.OwnerReference{want}))
	}
}

// ownedByADeployment is nil when a Deployment owns sec (which checkOwnedByDeployment checks in
// full): until its Deployment exists, a data plane's Secret is owned by its Gateway.
func ownedByADeployment(sec *corev1.Secret) error {
	if refs := sec.OwnerReferences; len(refs) == 0 || refs[0].Kind != "Deployment" {
		return fmt.Errorf("Secret %s/%s owner references %s, want its Deployment", sec.Namespace, sec.Name, ownerRefs(refs))
	}
	return nil
}

// ownerRefs formats owner references for a test message.
func ownerRefs(refs []metav1.OwnerReference) string {
	var s []string
	for _, r := range refs {
		s = append(s, fmt.Sprintf("%s %s/%s uid=%s controller=%v blockOwnerDeletion=%v", r.APIVersion, r.Kind, r.Name, r.UID, deref(r.Controller), deref(r.BlockOwnerDeletion)))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// deref is *b, or "unset".
func deref(b *bool) string {
	if b == nil {
		return "unset"
	}
	return strconv.FormatBool(*b)
}

// backendAccepted returns the message of the AgentgatewayBackend key's Accepted condition, or an
// error unless that condition is True at the backend's generation and its message holds each of
// parts.
func backendAccepted(t *testing.T, key types.NamespacedName, parts ...string) (string, error) {
	t.Helper()
	be := get(t, key, &v1alpha1.AgentgatewayBackend{})
	if err := condition(be.Status.Conditions, "Accepted", metav1.ConditionTrue, "", be.Generation); err != nil {
		return "", fmt.Errorf("AgentgatewayBackend %s: %w", key, err)
	}
	msg := meta.FindStatusCondition(be.Status.Conditions, "Accepted").Message
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			return msg, fmt.Errorf("AgentgatewayBackend %s: Accepted message %q does not hold %q", key, msg, p)
		}
	}
	return msg, nil
}

// checkInvalid checks that the CRD schema refuses malformed objects and that objects the schema
// admits but the translator refuses get a False condition while the rest keeps serving.
func checkInvalid(t *testing.T, ads *adsWatch) {
	refused := []struct{ name, manifest, want string }{
		{"bad enum", backendYAML("bad-enum", `static: {host: a.example, port: 80, protocol: WebSocket}`), `spec.mcp.targets[0].static.protocol: Unsupported value: "WebSocket"`},
		{"two of exactly one", backendYAML("two-of-one", `static: {host: a.example, port: 80}
      selector: {services: {matchLabels: {app: x}}}`), "exactly one of"},
		{"TLS without name verification that names the names", backendYAML("tls-both", `static: {host: a.example, port: 443, policies: {tls: {insecureSkipVerify: Hostname, verifySubjectAltNames: [b.example]}}}`),
			"insecureSkipVerify and verifySubjectAltNames may not be set together"},
		{"TLS verification mode", backendYAML("tls-mode", `static: {host: a.example, port: 443, policies: {tls: {insecureSkipVerify: Chain}}}`),
			`spec.mcp.targets[0].static.policies.tls.insecureSkipVerify: Unsupported value: "Chain"`},
		{"TLS field mcpgate does not implement", backendYAML("tls-ca", `static: {host: a.example, port: 443, policies: {tls: {caCertificateRefs: [{name: ca}]}}}`),
			`unknown field "spec.mcp.targets[0].static.policies.tls.caCertificateRefs"`},
		{"missing required", `apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: no-targets, namespace: agentgateway-system}
spec:
  mcp: {}
`, "spec.mcp.targets: Required value"},
		{"JWKS refreshed too often", `apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: fast-jwks, namespace: agentgateway-system}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agentgateway}]
  traffic:
    jwtAuthentication:
      providers: [{issuer: x, jwks: {remote: {url: "https://x.example/jwks", cacheDuration: 1s}}}]
`, "jwks.remote.cacheDuration: Invalid value: \"1s\": must be at least 5m"},
		{"MCP OAuth discovery without Strict", mcpOAuthPolicyYAML("mcp-optional", "mode: Optional\n      mcp: {resourceMetadata: {scopes_supported: [read]}}"),
			"jwtAuthentication.mcp requires mode Strict"},
		{"MCP identity provider outside the enum", mcpOAuthPolicyYAML("mcp-idp", "mcp: {provider: Google}"),
			`spec.traffic.jwtAuthentication.mcp.provider: Unsupported value: "Google"`},
		{"rate limit with requests and tokens", rateLimitPolicyYAML("rl-both", "{requests: 2, tokens: 100, unit: Minutes}"), `spec.traffic.rateLimit.local[0]: Invalid value: exactly one of the fields in [requests tokens] must be set`},
		{"rate limit with neither requests nor tokens", rateLimitPolicyYAML("rl-neither", "{unit: Minutes, burst: 5}"),
			`spec.traffic.rateLimit.local[0]: Invalid value: exactly one of the fields in [requests tokens] must be set`},
		{"rate limit unit outside the enum", rateLimitPolicyYAML("rl-days", "{requests: 2, unit: Days}"),
			`spec.traffic.rateLimit.local[0].unit: Unsupported value: "Days"`},
		{"backend auth with two of key, secretRef and passthrough", backendYAML("auth-two", `static: {host: a.example, port: 80}
  policies:
    auth: {key: k, passthrough: {}}`), "exactly one of key, secretRef and passthrough must be set"},
		{"backend auth with none", backendAuthPolicyYAML("agentgateway.dev/v1alpha1", "AgentgatewayPolicy", "auth-none", "{}"),
			"exactly one of key, secretRef and passthrough must be set"},
		{"backend auth aws, which mcpgate does not serve", backendAuthPolicyYAML("enterpriseagentgateway.solo.io/v1alpha1", "EnterpriseAgentgatewayPolicy", "auth-aws", "{aws: {}}"),
			`unknown field "spec.backend.auth.aws"`},
		{"backend auth key over 2048 characters", backendAuthPolicyYAML("agentgateway.dev/v1alpha1", "AgentgatewayPolicy", "auth-long", "{key: "+strings.Repeat("k", 2049)+"}"),
			"spec.backend.auth.key: Too long"},
		{"backend auth key empty", backendAuthPolicyYAML("agentgateway.dev/v1alpha1", "AgentgatewayPolicy", "auth-empty", `{key: ""}`),
			"spec.backend.auth.key: Invalid value"},
	}
	for _, c := range refused {
		out, err := testCluster.kubectl([]byte(c.manifest), "apply", "-f", "-")
		if err == nil {
			t.Errorf("%s: the API server accepted it:\n%s", c.name, out)
			continue
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: error %q does not name %q", c.name, out, c.want)
		}
	}
	// jwtAuthentication.mcp as agentgateway's manifests write it, mode defaulted to Strict and
	// resourceMetadata of any JSON, is admitted (provider and clientId are the translator's to
	// refuse, as its goldens show).
	// traffic.rateLimit.local with tokens (agentgateway's LLM budgets) is admitted: the translator
	// refuses it (its goldens show).
	mustKubectl(t, []byte(rateLimitPolicyYAML("rl-tokens", "{tokens: 1000, unit: Minutes, burst: 10}")), "apply", "--dry-run=server", "-f", "-")
	// backend auth as agentgateway's manifests write it: passthrough (an empty object), an inline
	// key, a Secret, in both policy kinds and in a backend's own policies.
	for _, auth := range []string{"{passthrough: {}}", "{key: sk-not-real}", "{secretRef: {name: tools-token}}"} {
		mustKubectl(t, []byte(backendAuthPolicyYAML("agentgateway.dev/v1alpha1", "AgentgatewayPolicy", "auth-ok", auth)), "apply", "--dry-run=server", "-f", "-")
		mustKubectl(t, []byte(backendAuthPolicyYAML("enterpriseagentgateway.solo.io/v1alpha1", "EnterpriseAgentgatewayPolicy", "auth-ok", auth)), "apply", "--dry-run=server", "-f", "-")
		mustKubectl(t, []byte(backendYAML("auth-ok", `static: {host: a.example, port: 80}
  policies:
    auth: `+auth)), "apply", "--dry-run=server", "-f", "-")
	}
	mustKubectl(t, []byte(mcpOAuthPolicyYAML("mcp-oauth", "mcp: {provider: Keycloak, clientId: c, resourceMetadata: {scopes_supported: [read], x_nested: {a: 1, b: null}}}")),
		"apply", "--dry-run=server", "-f", "-")

	// Schema-valid, refused by the translator.
	mustKubectl(t, []byte(`apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: bad-cel, namespace: agentgateway-system}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: unknown-backend}
  traffic:
    authorization:
      policy:
        matchExpressions: ['jwt.org ==']
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: unknown-backend, namespace: agentgateway-system}
spec:
  parentRefs: [{name: agentgateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /nowhere}}]
    backendRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: does-not-exist}]
`), "apply", "-f", "-")
	eventually(t, "bad CEL and unknown backend reported", func() error {
		pol := get(t, types.NamespacedName{Namespace: labNS, Name: "bad-cel"}, &v1alpha1.AgentgatewayPolicy{})
		if len(pol.Status.Ancestors) == 0 {
			return fmt.Errorf("policy bad-cel has no ancestor status")
		}
		c := meta.FindStatusCondition(pol.Status.Ancestors[0].Conditions, "Accepted")
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "matchExpressions[0]") {
			return fmt.Errorf("policy bad-cel Accepted %+v, want False naming matchExpressions[0]", c)
		}
		rt := get(t, types.NamespacedName{Namespace: labNS, Name: "unknown-backend"}, &gwv1.HTTPRoute{})
		p, err := ourParent(rt, "agentgateway")
		if err != nil {
			return err
		}
		rc := meta.FindStatusCondition(p.Conditions, "ResolvedRefs")
		if rc == nil || rc.Status != metav1.ConditionFalse || !strings.Contains(rc.Message, "does-not-exist") {
			return fmt.Errorf("route unknown-backend ResolvedRefs %+v, want False naming does-not-exist", rc)
		}
		// the route's owner sees that a refused policy makes it answer 500
		return condition(p.Conditions, "mcpgate.dev/AgentgatewayPolicyAffected", metav1.ConditionTrue, "PolicyRefused", rt.Generation)
	})
	// The lab's route and cluster keep serving.
	if err := ads.hasNames(resourcev3.ClusterType, labCluster); err != nil {
		t.Error(err)
	}
	m, _ := ads.get(resourcev3.RouteType, listenerName)
	if !slices.Contains(routeNames(m.(*routev3.RouteConfiguration)), labRoute+"/bridge") {
		t.Errorf("lab route gone after invalid objects: %q", routeNames(m.(*routev3.RouteConfiguration)))
	}
	mustKubectl(t, nil, "-n", labNS, "delete", "agentgatewaypolicy/bad-cel", "httproute/unknown-backend")
}

// checkSelectorTargets checks that a selector target finds a Service by its appProtocol and
// that its EDS endpoints follow the EndpointSlices (envtest runs no EndpointSlice controller:
// the test writes them).
func checkSelectorTargets(t *testing.T, ads *adsWatch) {
	const cluster = "agentgatewaybackend/agentgateway-system/selected/everything/agentgateway-system/everything/3001"
	slice := func(addrs string) []byte { return []byte(endpointSliceYAML(labNS, "everything", 3001, addrs)) }
	mustKubectl(t, []byte(`apiVersion: v1
kind: Service
metadata:
  name: everything
  namespace: agentgateway-system
  labels: {app: everything}
  annotations: {agentgateway.dev/mcp-target-name: everything}
spec:
  ports: [{name: mcp, port: 3001, appProtocol: agentgateway.dev/mcp}]
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: selected, namespace: agentgateway-system}
spec:
  mcp:
    targets:
    - name: everything
      selector: {services: {matchLabels: {app: everything}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: selected, namespace: agentgateway-system}
spec:
  parentRefs: [{name: agentgateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /everything}}]
    backendRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: selected}]
`), "apply", "-f", "-")
	mustKubectl(t, slice("- addresses: [10.3.0.1]\n- addresses: [10.3.0.2]\n"), "apply", "-f", "-")
	eventually(t, "endpoints from the EndpointSlice", func() error { return ads.hasEndpoints(cluster, "10.3.0.1", "10.3.0.2") })
	mustKubectl(t, slice("- addresses: [10.3.0.2]\n- addresses: [10.3.0.3]\n"), "apply", "-f", "-")
	eventually(t, "endpoints follow the EndpointSlice", func() error { return ads.hasEndpoints(cluster, "10.3.0.2", "10.3.0.3") })
	eventually(t, "backend status names the Service", func() error {
		_, err := backendAccepted(t, types.NamespacedName{Namespace: labNS, Name: "selected"}, "everything")
		return err
	})
	mustKubectl(t, nil, "-n", labNS, "delete", "httproute/selected", "agentgatewaybackend/selected", "service/everything", "endpointslice/everything-1")
	eventually(t, "selector cluster removed", func() error {
		if _, ok := ads.get(resourcev3.ClusterType, cluster); ok {
			return fmt.Errorf("cluster %s still served", cluster)
		}
		return nil
	})
}

// endpointSliceYAML is the manifest of the EndpointSlice SERVICE-1 in ns of the Service's port
// named mcp, on port, with endpoints (the YAML list items, one a line).
func endpointSliceYAML(ns, service string, port int, endpoints string) string {
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s-1
  namespace: %s
  labels: {kubernetes.io/service-name: %s}
addressType: IPv4
ports: [{name: mcp, port: %d}]
endpoints:
`, service, ns, service, port) + endpoints
}

func backendYAML(name, target string) string {
	return fmt.Sprintf(`apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: %s, namespace: agentgateway-system}
spec:
  mcp:
    targets:
    - name: t
      %s
`, name, target)
}

// mcpOAuthPolicyYAML is a policy named name on the lab's Gateway whose JWT authentication has one
// provider and then the lines of rest (indented as its fields).
func mcpOAuthPolicyYAML(name, rest string) string {
	return fmt.Sprintf(`apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: %s, namespace: agentgateway-system}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agentgateway}]
  traffic:
    jwtAuthentication:
      providers: [{issuer: "https://x.example", jwks: {remote: {url: "https://x.example/jwks"}}}]
      %s
`, name, rest)
}

// checkClassByName checks that a Gateway whose class belongs to another controller is served
// when the class is named in GatewayClasses, that its class's status is left to that
// controller, and that a Gateway of an unserved class is left alone.
func checkClassByName(t *testing.T, ctrl *controller) {
	mustKubectl(t, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: byname}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other-class}
spec: {controllerName: example.com/other-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: unserved-class}
spec: {controllerName: example.com/other-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: byname}
spec:
  gatewayClassName: other-class
  listeners: [{name: http, port: 80, protocol: HTTP}, {name: alt, port: 9090, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ignored, namespace: byname}
spec:
  gatewayClassName: unserved-class
  listeners: [{name: http, port: 80, protocol: HTTP}]
`), "apply", "-f", "-")
	ads := watchADS(t, ctrl, "byname/gw")
	eventually(t, "gateway of a class served by name", func() error {
		return ads.hasNames(resourcev3.ListenerType, "byname/gw/80", "byname/gw/9090")
	})
	markAvailable(t, types.NamespacedName{Namespace: "byname", Name: "gw"}, 1)
	eventually(t, "its status", func() error {
		gw := get(t, types.NamespacedName{Namespace: "byname", Name: "gw"}, &gwv1.Gateway{})
		return condition(gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
	})
	checkDataPlane(t, "byname", "gw", []int32{80, 9090})
	// A Deployment deleted by hand comes back, and its Secret follows the new one (else the
	// garbage collector would delete the Secret, which was owned by the one deleted).
	gwKey := types.NamespacedName{Namespace: "byname", Name: "gw"}
	deleted := get(t, gwKey, &appsv1.Deployment{})
	mustKubectl(t, nil, "-n", "byname", "delete", "deployment", "gw")
	eventually(t, "the Deployment again, owning the Secret", func() error {
		var dep appsv1.Deployment
		var sec corev1.Secret
		if err := testCluster.client.Get(context.Background(), gwKey, &dep); err != nil {
			return err
		}
		if dep.UID == deleted.UID {
			return fmt.Errorf("the Deployment was not deleted yet")
		}
		if err := testCluster.client.Get(context.Background(), types.NamespacedName{Namespace: "byname", Name: "gw-xds-tls"}, &sec); err != nil {
			return err
		}
		if refs := sec.OwnerReferences; len(refs) != 1 || refs[0].UID != dep.UID {
			return fmt.Errorf("Secret owner references %s, want the Deployment of uid %s", ownerRefs(refs), dep.UID)
		}
		return nil
	})
	checkDataPlane(t, "byname", "gw", []int32{80, 9090})
	// Both keep the status the API server defaults (Accepted Unknown, "Waiting for controller").
	gc := get(t, types.NamespacedName{Name: "other-class"}, &gwv1.GatewayClass{})
	if c := meta.FindStatusCondition(gc.Status.Conditions, "Accepted"); c != nil && c.Status != metav1.ConditionUnknown {
		t.Errorf("another controller's GatewayClass got status %+v", gc.Status.Conditions)
	}
	ignored := get(t, types.NamespacedName{Namespace: "byname", Name: "ignored"}, &gwv1.Gateway{})
	if c := meta.FindStatusCondition(ignored.Status.Conditions, "Accepted"); c != nil && c.Status != metav1.ConditionUnknown {
		t.Errorf("Gateway of an unserved class got status %+v", ignored.Status.Conditions)
	}
	if err := testCluster.client.Get(context.Background(), types.NamespacedName{Namespace: "byname", Name: "ignored"}, &appsv1.Deployment{}); err == nil {
		t.Error("Gateway of an unserved class got a data plane")
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}

	// A Deployment of the Gateway's name that mcpgate did not create is left alone.
	mustKubectl(t, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: taken, namespace: byname}
spec:
  selector: {matchLabels: {app: mine}}
  template:
    metadata: {labels: {app: mine}}
    spec: {containers: [{name: mine, image: example.com/mine}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: taken, namespace: byname}
spec:
  gatewayClassName: other-class
  listeners: [{name: http, port: 80, protocol: HTTP}]
`), "apply", "-f", "-")
	eventually(t, "Gateway not programmed, naming the Deployment in the way", func() error {
		gw := get(t, types.NamespacedName{Namespace: "byname", Name: "taken"}, &gwv1.Gateway{})
		c := meta.FindStatusCondition(gw.Status.Conditions, "Programmed")
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Invalid" || !strings.Contains(c.Message, "Deployment byname/taken exists and is not managed by mcpgate") {
			return fmt.Errorf("Programmed %+v", c)
		}
		return nil
	})
	dep := get(t, types.NamespacedName{Namespace: "byname", Name: "taken"}, &appsv1.Deployment{})
	if len(dep.Labels) != 0 || dep.Spec.Template.Spec.Containers[0].Name != "mine" {
		t.Errorf("the user's Deployment was changed: labels %v, containers %+v", dep.Labels, dep.Spec.Template.Spec.Containers)
	}

	// A bootstrap ConfigMap or certificate Secret of the Gateway's names made by someone else
	// (say, to run Envoy with their bootstrap and the Gateway's certificate): the data plane's
	// Deployment, which would mount it, is not applied at all.
	for _, c := range []struct {
		gateway, object string   // the object in the way, as the message names it
		create          []string // the kubectl command that makes it
	}{
		{"planted-cm", "ConfigMap byname/planted-cm-bootstrap", []string{"create", "configmap", "planted-cm-bootstrap", "--from-literal=bootstrap.yaml=admin: {}"}},
		{"planted-secret", "Secret byname/planted-secret-xds-tls", []string{"create", "secret", "generic", "planted-secret-xds-tls", "--from-literal=tls.crt=x"}},
	} {
		mustKubectl(t, nil, append([]string{"-n", "byname"}, c.create...)...)
		mustKubectl(t, []byte(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: %s, namespace: byname}
spec:
  gatewayClassName: other-class
  listeners: [{name: http, port: 80, protocol: HTTP}]
`, c.gateway)), "apply", "-f", "-")
		eventually(t, "Gateway "+c.gateway+" not programmed, naming "+c.object, func() error {
			gw := get(t, types.NamespacedName{Namespace: "byname", Name: c.gateway}, &gwv1.Gateway{})
			cond := meta.FindStatusCondition(gw.Status.Conditions, "Programmed")
			if cond == nil || cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, c.object+" exists and is not managed by mcpgate") ||
				!strings.Contains(cond.Message, "Deployment byname/"+c.gateway+" is not applied") {
				return fmt.Errorf("Programmed %+v", cond)
			}
			return nil
		})
		if err := testCluster.client.Get(context.Background(), types.NamespacedName{Namespace: "byname", Name: c.gateway}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("Gateway %s: a Deployment mounting the planted %s exists (%v)", c.gateway, c.object, err)
		}
	}
}

// checkLeaderElection starts a second replica: it serves the same xDS but does not lead; when
// the leader stops, it takes over the Lease and writes status. It returns the new leader.
// The second replica outlives t: it is stopped when top ends.
func checkLeaderElection(t, top *testing.T, leader *controller) *controller {
	if !leader.prov.IsLeader() {
		t.Fatal("the running controller does not lead")
	}
	second := startController(t, top, controllerConfig(), labOptions(t))
	a, b := watchADS(t, leader, labGateway), watchADS(t, second, labGateway)
	eventually(t, "both replicas serve the same", func() error {
		if len(a.names(resourcev3.ListenerType)) == 0 {
			return fmt.Errorf("leader serves nothing yet")
		}
		return diffSets(b.all(), a.all(), servedTypes...)
	})
	if second.prov.IsLeader() {
		t.Fatal("two replicas lead at once")
	}
	leader.stop(t)
	eventually(t, "the second replica takes over", func() error {
		if !second.prov.IsLeader() {
			return fmt.Errorf("not leader yet")
		}
		return nil
	})
	touchAndWait(t, "FailClosed")
	return second
}

func routeNames(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			out = append(out, r.GetName())
		}
	}
	return out
}

// firstRoute returns the first route of an HTTPRoute (after the translator's refusal of path
// parameters, which every virtual host starts with).
func firstRoute(rc *routev3.RouteConfiguration) *routev3.Route {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() != translator.RefuseAmbiguousPathsRoute {
				return r
			}
		}
	}
	return nil
}

// resourceName is the xDS name of a resource.
func resourceName(t *testing.T, m proto.Message) string {
	t.Helper()
	n, ok := m.(interface{ GetName() string })
	if !ok {
		t.Fatalf("%T has no name", m)
	}
	return n.GetName()
}

// labCopy is the repository's copy of the lab (the user-facing mcp-connectivity-lab.md): the
// steps in testdata/lab are checked against it, so the check runs in any checkout.
const labCopy = "testdata/lab/mcp-connectivity-lab.md"

// TestLabManifestsMatchSeed checks that testdata/lab holds the lab's steps 2, 3, 6 and 9 byte for
// byte, as the repository's copy of the lab has them, and, when the shared seed is beside the
// checkout (../shared/seed), that the copy is that seed byte for byte.
func TestLabManifestsMatchSeed(t *testing.T) {
	lab, err := os.ReadFile(labCopy)
	if err != nil {
		t.Fatalf("the repository's copy of the lab: %v", err)
	}
	for _, step := range []string{"2", "3", "6", "9"} {
		path := filepath.Join("testdata", "lab", "step"+step+".yaml")
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := labHeredoc(string(lab), step)
		if err != nil {
			t.Errorf("%s: %v", labCopy, err)
			continue
		}
		if got != string(want) {
			t.Errorf("%s differs from step %s of %s", path, step, labCopy)
		}
	}
	seed := filepath.Join(testCluster.repo, "..", "shared", "seed", "mcp-connectivity-lab.md")
	shared, err := os.ReadFile(seed)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t.Logf("the shared seed %s is not beside this checkout: only the copy %s was checked", seed, labCopy)
	case err != nil:
		t.Fatal(err)
	case !bytes.Equal(shared, lab):
		t.Errorf("%s differs from the shared seed %s: copy the seed again and update testdata/lab/step*.yaml", labCopy, seed)
	}
}

// labHeredoc returns the manifest of the lab's step (the heredoc of `kubectl apply -f - <<EOF`,
// with its last newline) from the lab's text.
func labHeredoc(lab, step string) (string, error) {
	i := strings.Index(lab, "\n## Step "+step+":")
	if i < 0 {
		return "", fmt.Errorf("no step %s", step)
	}
	section := lab[i+1:]
	if next := strings.Index(section, "\n## "); next >= 0 {
		section = section[:next+1]
	}
	start := strings.Index(section, "<<EOF\n")
	end := strings.Index(section, "\nEOF\n")
	if start < 0 || end < start {
		return "", fmt.Errorf("step %s has no heredoc", step)
	}
	return section[start+len("<<EOF\n") : end+1], nil
}

// rateLimitPolicyYAML is a policy on the lab's Gateway with one traffic.rateLimit.local entry.
// backendAuthPolicyYAML is a policy of apiVersion and kind named name on the lab's Gateway whose
// spec.backend.auth is auth (flow YAML).
func backendAuthPolicyYAML(apiVersion, kind, name, auth string) string {
	return `apiVersion: ` + apiVersion + `
kind: ` + kind + `
metadata: {name: ` + name + `, namespace: agentgateway-system}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agentgateway}]
  backend:
    auth: ` + auth + `
`
}

func rateLimitPolicyYAML(name, entry string) string {
	return `apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: ` + name + `, namespace: agentgateway-system}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agentgateway}]
  traffic:
    rateLimit:
      local: [` + entry + `]
`
}
