package kubernetes_test

// The tests of this package run against a real kube-apiserver and etcd (envtest), built once per
// machine by `make kube-assets` into $MCPGATE_CACHE/kube. TestMain starts one control plane for
// the whole package, installs the Gateway API standard CRDs and mcpgate's CRDs with
// `kubectl apply --server-side`, and every test shares it (each in its own namespaces).

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/xds"
)

// cluster is the shared API server of the package's tests.
type cluster struct {
	cfg        *rest.Config
	kubeconfig string
	cacheDir   string
	client     client.Client
	repo       string
	// auditLog is the API server's audit log (JSON lines, every request's metadata).
	auditLog string
	// assets is the folder of kube-apiserver and etcd, for a test that needs an API server of
	// its own.
	assets string
}

// testCluster is set by TestMain before any test runs and never changed after.
var testCluster *cluster

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// The libraries' own loggers (klog: leader election; controller-runtime) stay quiet.
	klog.SetLogger(logr.Discard())
	ctrllog.SetLogger(logr.Discard())

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		c := os.Getenv("MCPGATE_CACHE")
		if c == "" {
			home, _ := os.UserHomeDir()
			c = filepath.Join(home, ".cache", "mcpgate")
		}
		assets = filepath.Join(c, "kube")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %s is missing from %s: run `make kube-assets` (builds kube-apiserver and etcd once per machine)\n", bin, assets)
			return 1
		}
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: kubectl is not installed: run `make kube-assets` (installs it with apt-get)")
		return 1
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	auditDir, err := os.MkdirTemp("", "mcpgate-kube-audit-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(auditDir)
	auditLog := filepath.Join(auditDir, "audit.log")
	if err := os.WriteFile(filepath.Join(auditDir, "policy.yaml"), []byte(auditPolicy), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", filepath.Join(auditDir, "policy.yaml")).
		Set("audit-log-path", auditLog)
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: start kube-apiserver and etcd from %s: %v\n", assets, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
		}
	}()
	c, err := newCluster(env, cfg, repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(filepath.Dir(c.kubeconfig))
	c.auditLog, c.assets = auditLog, assets
	testCluster = c
	code := m.Run()
	// The controller's requests are compared with deploy/'s RBAC once every test has run.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		if err := checkRBAC(auditLog, filepath.Join(repo, "deploy", "controller", "rbac.yaml")); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: RBAC:", err)
			return 1
		}
	}
	return code
}

// newCluster writes an admin kubeconfig for kubectl and installs the CRDs.
func newCluster(env *envtest.Environment, cfg *rest.Config, repo string) (*cluster, error) {
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("add admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	dir, err := os.MkdirTemp("", "mcpgate-kube-test-")
	if err != nil {
		return nil, err
	}
	c := &cluster{cfg: user.Config(), kubeconfig: filepath.Join(dir, "kubeconfig"), cacheDir: filepath.Join(dir, "cache"), repo: repo}
	if err := os.WriteFile(c.kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	scheme, err := kubernetes.NewScheme()
	if err != nil {
		return nil, err
	}
	if c.client, err = client.New(c.cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	gatewayAPI, err := gatewayAPIDir(repo)
	if err != nil {
		return nil, err
	}
	// The HTTPRoute CRD is too large for a client-side apply: server-side, as docs/kubernetes.md
	// tells users.
	for _, dir := range []string{filepath.Join(gatewayAPI, "config", "crd", "standard"), filepath.Join(repo, "deploy", "crds")} {
		if out, err := c.kubectl(nil, "apply", "--server-side", "-f", dir); err != nil {
			return nil, fmt.Errorf("install CRDs from %s: %v\n%s", dir, err, out)
		}
	}
	if out, err := c.kubectl(nil, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return nil, fmt.Errorf("wait for CRDs: %v\n%s", err, out)
	}
	return c, nil
}

// gatewayAPIDir is the folder of the sigs.k8s.io/gateway-api module that go.mod requires.
func gatewayAPIDir(repo string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("find the gateway-api module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// kubectl runs kubectl against the test API server with stdin and returns its combined output.
func (c *cluster) kubectl(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", c.cacheDir}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustKubectl runs kubectl and fails the test when it fails.
func mustKubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := testCluster.kubectl(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// classAndNamespace creates a GatewayClass of controllerName and a namespace, both called name,
// for a test's own controller.
func classAndNamespace(t *testing.T, name, controllerName string) {
	t.Helper()
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: `+name+`}
spec: {controllerName: `+controllerName+`}
---
apiVersion: v1
kind: Namespace
metadata: {name: `+name+`}
`), "apply", "-f", "-")
}

// testDataPlane is the DataPlane of the tests' own controllers: xDS over mutual TLS with ca, or
// plaintext when ca is nil.
func testDataPlane(ca *pki.CA) *kubernetes.DataPlane {
	return &kubernetes.DataPlane{XDSAddress: "mcpgate-controller.mcpgate-system.svc:18000", ExtProcImage: "ghcr.io/mcpgate/mcpgate:test", XDSCA: ca}
}

// httpGateway is the manifest of Gateway ns/name of class with one listener, http on 8080.
func httpGateway(ns, name, class string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: %s, namespace: %s}
spec:
  gatewayClassName: %s
  listeners: [{name: http, port: 8080, protocol: HTTP}]
`, name, ns, class))
}

// routeAfterPass creates an HTTPRoute name on gateway (in ns, served by the test's controller)
// and waits for its status: the pass that wrote it read the cluster after everything the test
// did before, and wrote every other object's status and data plane first.
func routeAfterPass(t *testing.T, ns, gateway, name string) {
	t.Helper()
	mustKubectl(t, []byte(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: %s}
spec:
  parentRefs: [{name: %s}]
  rules: [{matches: [{path: {type: PathPrefix, value: /%s}}]}]
`, name, ns, gateway, name)), "apply", "-f", "-")
	eventually(t, "status of route "+name, func() error {
		if r := get(t, types.NamespacedName{Namespace: ns, Name: name}, &gwv1.HTTPRoute{}); len(r.Status.Parents) == 0 {
			return fmt.Errorf("route %s/%s has no status yet", ns, name)
		}
		return nil
	})
}

// markAvailable writes the status of the Deployment key (once it exists) as the Deployment
// controller would once n of its replicas are ready and available: envtest runs no controller
// manager and no kubelet.
func markAvailable(t *testing.T, key types.NamespacedName, n int32) {
	t.Helper()
	eventually(t, "Deployment "+key.String()+" with "+fmt.Sprint(n)+" available replicas", func() error {
		var dep appsv1.Deployment
		if err := testCluster.client.Get(context.Background(), key, &dep); err != nil {
			return err
		}
		dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		return testCluster.client.Status().Update(context.Background(), &dep)
	})
}

// applyFile applies a manifest file the way the lab does: `kubectl apply -f -` with the file
// on stdin.
func applyFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mustKubectl(t, b, "apply", "-f", "-")
}

// eventually polls check until it returns nil, failing the test with its last error after the
// deadline. The deadline bounds a wait for the controller; it is not a performance assertion.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// controller is one in-process controller: the provider and a real xDS server on loopback.
type controller struct {
	prov   *kubernetes.Provider
	xds    *xds.Server
	addr   string
	tls    bool // xDS over mutual TLS (opts.DataPlane.XDSCA), as `mcpgate controller --xds-tls` serves it
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startController runs a provider with opts against cfg, publishing to a fresh xDS server on a
// loopback port. It stops when owner (t or a parent of t) ends, or earlier with stop.
func startController(t, owner *testing.T, cfg *rest.Config, opts kubernetes.Options) *controller {
	t.Helper()
	return startControllerOn(t, owner, cfg, opts, "127.0.0.1:0")
}

// startControllerOn is startController with its xDS server on addr.
func startControllerOn(t, owner *testing.T, cfg *rest.Config, opts kubernetes.Options, addr string) *controller {
	t.Helper()
	srv := xds.New(nil)
	opts.Publisher = srv
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{owner}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	prov, err := kubernetes.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS == 0 && kubernetes.ClientQPS(prov) >= 0 {
		// client-go's default of 5 requests a second held passes of 30 Gateways for 30 s.
		t.Fatalf("the controller's clients are held to %v requests a second, want no client-side limit", kubernetes.ClientQPS(prov))
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	gopts := xds.GRPCServerOptions()
	withTLS := opts.DataPlane != nil && opts.DataPlane.XDSCA != nil
	if withTLS {
		cfg, err := opts.DataPlane.XDSCA.ServerConfig(opts.DataPlane.XDSAddress)
		if err != nil {
			t.Fatal(err)
		}
		creds, err := srv.MutualTLS(cfg, pki.GatewayOf)
		if err != nil {
			t.Fatal(err)
		}
		gopts = append(gopts, creds)
	}
	gs := grpc.NewServer(gopts...)
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	c := &controller{prov: prov, xds: srv, addr: lis.Addr().String(), tls: withTLS, cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- prov.Run(ctx)
		gs.Stop()
	}()
	owner.Cleanup(func() { c.stop(owner) })
	return c
}

// stop stops the controller and waits for it; stopping twice is a no-op.
func (c *controller) stop(t *testing.T) {
	t.Helper()
	c.once.Do(func() {
		c.cancel()
		if err := <-c.done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
}

// testWriter writes the controller's logs into the test log while the test runs.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
