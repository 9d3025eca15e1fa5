package kubernetes_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// failedRead is the message of the API server error failingReads answers with.
const failedRead = "Internal error occurred: etcdserver: request timed out"

// failingReads sits between a controller and the API server and answers the GETs of the Secrets
// it is told to fail with an API server error (500, reason InternalError, as the API server
// answers when etcd times out); every other request reaches the API server.
type failingReads struct {
	mu    sync.Mutex
	paths map[string]bool // URL paths of the Secrets whose reads fail
}

// fail makes the reads of Secret ns/name fail (on) or succeed again.
func (f *failingReads) fail(ns, name string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paths == nil {
		f.paths = map[string]bool{}
	}
	f.paths["/api/v1/namespaces/"+ns+"/secrets/"+name] = on
}

// config returns cfg with f in front of its transport.
func (f *failingReads) config(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	wrap := cfg.WrapTransport
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if wrap != nil {
			rt = wrap(rt)
		}
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			f.mu.Lock()
			failing := req.Method == http.MethodGet && f.paths[req.URL.Path]
			f.mu.Unlock()
			if !failing {
				return rt.RoundTrip(req)
			}
			body := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":"InternalError","code":500}`, failedRead)
			return &http.Response{StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewBufferString(body)), Request: req}, nil
		})
	}
	return cfg
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestSecretReadFailure: a Secret that cannot be read (the API server answers its GET with an
// error) fails its own backend or Gateway only. Every other object is translated, and its change
// served: gw1's rotated API key. gw2's backend, whose Secret was read before, keeps its API key
// (the copy read before), its Accepted condition saying why; a backend whose Secret was never read
// is refused with the reason; gw2, whose session key Secret cannot be read, keeps its data plane
// and is not Programmed, saying why. Once the reads succeed again, all of it is as before.
func TestSecretReadFailure(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/secret-failure", "secret-failure"
	classAndNamespace(t, ns, ctrlName)
	var manifests []string
	for _, gw := range []string{"gw1", "gw2"} {
		manifests = append(manifests, string(httpGateway(ns, gw, ns)), llmBackendYAML(ns, gw, "key-"+gw))
	}
	mustKubectl(t, []byte(strings.Join(manifests, "---\n")), "apply", "-f", "-")
	faults := &failingReads{}
	// A full pass every second reads the Secrets again (a change's pass does too, for the
	// backends' Secrets).
	ctrl := startController(t, t, faults.config(testCluster.cfg), kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: time.Second, DataPlane: testDataPlane(nil)})
	ads := map[string]*adsWatch{"gw1": watchADS(t, ctrl, ns+"/gw1"), "gw2": watchADS(t, ctrl, ns+"/gw2")}
	header := func(gw, want string) func() error {
		return routeHeaders(ads[gw], ns+"/"+gw+"/8080", "authorization: "+want)
	}
	programmed := func(gw string, status metav1.ConditionStatus, msg string) func() error {
		return func() error {
			g := get(t, types.NamespacedName{Namespace: ns, Name: gw}, &gwv1.Gateway{})
			c := meta.FindStatusCondition(g.Status.Conditions, "Programmed")
			if c == nil || c.Status != status || !strings.Contains(c.Message, msg) {
				return fmt.Errorf("Gateway %s: Programmed %+v, want %s with %q", gw, c, status, msg)
			}
			return nil
		}
	}
	backend := func(gw string, status metav1.ConditionStatus, msg string) func() error {
		return func() error {
			be := get(t, types.NamespacedName{Namespace: ns, Name: gw}, &v1alpha1.AgentgatewayBackend{})
			c := meta.FindStatusCondition(be.Status.Conditions, "Accepted")
			if c == nil || c.Status != status || !strings.Contains(c.Message, msg) || status == metav1.ConditionTrue && msg == "" && strings.Contains(c.Message, "could not be read") {
				return fmt.Errorf("AgentgatewayBackend %s: Accepted %+v, want %s with %q", gw, c, status, msg)
			}
			return nil
		}
	}
	for _, gw := range []string{"gw1", "gw2"} {
		markAvailable(t, types.NamespacedName{Namespace: ns, Name: gw}, 1)
		eventually(t, gw+" served", header(gw, "Bearer key-"+gw))
		eventually(t, gw+" programmed", programmed(gw, metav1.ConditionTrue, ""))
	}
	gw2Dep := get(t, types.NamespacedName{Namespace: ns, Name: "gw2"}, &appsv1.Deployment{})

	// gw2's backend Secret and session key cannot be read, nor the Secret of a new backend.
	faults.fail(ns, "gw2", true)
	faults.fail(ns, "gw2-session-key", true)
	faults.fail(ns, "gw3", true)
	mustKubectl(t, []byte(llmBackendYAML(ns, "gw3", "key-gw3")), "apply", "-f", "-")
	mustKubectl(t, []byte(secretYAML(ns, "gw1", "key-gw1-rotated")), "apply", "-f", "-")
	eventually(t, "gw1's rotated API key served", header("gw1", "Bearer key-gw1-rotated"))
	eventually(t, "gw2's backend on the copy of its Secret read before", backend("gw2", metav1.ConditionTrue,
		"Secret "+ns+"/gw2 could not be read ("+failedRead+"): the copy read before is used"))
	eventually(t, "a backend whose Secret was never read refused", backend("gw3", metav1.ConditionFalse,
		"Secret "+ns+"/gw3 could not be read: "+failedRead))
	eventually(t, "gw2 not programmed for its session key", programmed("gw2", metav1.ConditionFalse, "read Secret "+ns+"/gw2-session-key"))
	if err := header("gw2", "Bearer key-gw2")(); err != nil {
		t.Errorf("gw2's API key while its Secret cannot be read: %v", err)
	}
	if err := programmed("gw1", metav1.ConditionTrue, "")(); err != nil {
		t.Errorf("another Gateway's Secret cannot be read: %v", err)
	}
	if dep := get(t, types.NamespacedName{Namespace: ns, Name: "gw2"}, &appsv1.Deployment{}); dep.Generation != gw2Dep.Generation {
		t.Errorf("gw2's Deployment changed (generation %d, was %d) while its session key could not be read", dep.Generation, gw2Dep.Generation)
	}

	for _, name := range []string{"gw2", "gw2-session-key", "gw3"} {
		faults.fail(ns, name, false)
	}
	eventually(t, "gw2's backend without the warning", backend("gw2", metav1.ConditionTrue, ""))
	eventually(t, "the new backend accepted", backend("gw3", metav1.ConditionTrue, ""))
	eventually(t, "gw2 programmed again", programmed("gw2", metav1.ConditionTrue, ""))
}

// secretYAML is the manifest of Secret ns/name holding an API key.
func secretYAML(ns, name, key string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
stringData: {Authorization: %s}
`, name, ns, key)
}

// llmBackendYAML is the manifests of an LLM backend called name whose API key is in the Secret
// name (holding key), and of an HTTPRoute name to it on Gateway name.
func llmBackendYAML(ns, name, key string) string {
	return secretYAML(ns, name, key) + fmt.Sprintf(`---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  ai: {provider: {openai: {}}}
  policies: {auth: {secretRef: {name: %[1]s}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  parentRefs: [{name: %[1]s}]
  rules:
  - backendRefs: [{name: %[1]s, group: agentgateway.dev, kind: AgentgatewayBackend}]
`, name, ns)
}
