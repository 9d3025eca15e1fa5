package kubernetes_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/test/envoydouble/double"

	"github.com/mcpgate/mcpgate/internal/freeport"
)

// TestDataPlaneOverMutualTLS runs a Gateway's data plane as the controller deploys it: the
// bootstrap from its ConfigMap and the certificate from its Secret (written where the pod mounts
// them), Envoy (the test double) and the extproc sidecar both subscribing over mutual TLS to the
// controller's xDS, and an MCP client calling a tool through it.
func TestDataPlaneOverMutualTLS(t *testing.T) {
	ctx := context.Background()
	installDeploy(t, false)
	const ns = "dp-tls"
	mustKubectl(t, nil, "create", "namespace", ns)

	// The MCP server behind the Gateway.
	server := mcp.NewServer(&mcp.Implementation{Name: "echo", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, args struct {
		Text string `json:"text"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: args.Text}}}, nil, nil
	})
	mcpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mcpSrv := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)}
	go mcpSrv.Serve(mcpLis)
	t.Cleanup(func() { mcpSrv.Close() })
	mcpPort := mcpLis.Addr().(*net.TCPAddr).Port

	gwPort, xdsAddr := freePort(t), "127.0.0.1:"+strconv.Itoa(freePort(t))
	mustKubectl(t, []byte(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: %[1]s}
spec:
  gatewayClassName: enterprise-agentgateway
  listeners: [{name: http, port: %[2]d, protocol: HTTP}]
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: echo, namespace: %[1]s}
spec:
  mcp:
    targets: [{name: echo, static: {host: 127.0.0.1, port: %[3]d, protocol: StreamableHTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: %[1]s}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: echo, group: agentgateway.dev, kind: AgentgatewayBackend}]}]
---
# A policy on the route: ext_proc must get it over its own mutual TLS subscription, or the call
# is refused (500).
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: echo, namespace: %[1]s}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: echo}]
  traffic:
    authorization:
      policy:
        matchExpressions: ['request.method == "POST" || request.method == "GET" || request.method == "DELETE"']
`, ns, gwPort, mcpPort)), "apply", "-f", "-")

	opts := labOptions(t)
	opts.DataPlane.XDSAddress = xdsAddr
	startControllerOn(t, t, controllerConfig(), opts, xdsAddr)

	// What the pod mounts: the bootstrap ConfigMap at /etc/envoy, the Secrets at XDSTLSDir and
	// (the sidecar only) SessionKeyDir.
	var cm corev1.ConfigMap
	var sec, sessionKey corev1.Secret
	var dep appsv1.Deployment
	var pdb policyv1.PodDisruptionBudget
	eventually(t, "the data plane's ConfigMap, Secrets, Deployment and PodDisruptionBudget", func() error {
		for name, obj := range map[string]client.Object{"gw-bootstrap": &cm, "gw-xds-tls": &sec, "gw-session-key": &sessionKey, "gw": &dep} {
			if err := testCluster.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
				return err
			}
		}
		// (the Secrets are owned by the Gateway until the Deployment exists)
		if err := errors.Join(ownedByADeployment(&sec), ownedByADeployment(&sessionKey)); err != nil {
			return err
		}
		// (applied last, once the Deployment that owns it has a UID)
		return testCluster.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gw"}, &pdb)
	})
	// One pod at a time may be evicted by drains; the budget goes with the Deployment.
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 ||
		!maps.Equal(pdb.Spec.Selector.MatchLabels, dep.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget gw: maxUnavailable %v, selector %v; want 1 over the Deployment's pods",
			pdb.Spec.MaxUnavailable, pdb.Spec.Selector)
	}
	checkOwnedByDeployment(t, &pdb, &dep)
	// The session key: random, owned by the Deployment (deleted with it), its hash on the pod
	// template (a new key rolls the pods).
	key := sessionKey.Data[kubernetes.SessionKeyFile]
	sum := sha256.Sum256(key)
	if len(key) < bind.KeySize || bytes.Equal(key, make([]byte, len(key))) {
		t.Errorf("Secret gw-session-key: %d bytes; want a random key of %d bytes", len(key), bind.KeySize)
	}
	checkOwnedByDeployment(t, &sessionKey, &dep)
	if got := dep.Spec.Template.Annotations[kubernetes.AnnotationSessionKeyHash]; got != hex.EncodeToString(sum[:8]) {
		t.Errorf("pod template session key hash %q, want the key's %x", got, sum[:8])
	}
	dir := t.TempDir()
	certs := filepath.Join(dir, "xds-tls")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pki.CertFile, pki.KeyFile, pki.CAFile} {
		if err := os.WriteFile(filepath.Join(certs, f), sec.Data[f], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "extproc.sock")
	boot := strings.NewReplacer(kubernetes.XDSTLSDir, certs, kubernetes.ExtProcSocket, sock, "port_value: 15000", "port_value: 0",
		kubernetes.MuxSocket, filepath.Join(dir, "mux.sock"), kubernetes.MuxUpstreamSocket, filepath.Join(dir, "upstream.sock")).
		Replace(cm.Data[kubernetes.BootstrapKey])
	bootPath := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(bootPath, []byte(boot), 0o600); err != nil {
		t.Fatal(err)
	}

	// The extproc sidecar, as `mcpgate extproc --xds-tls-dir --session-key-file` configures it.
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	clientTLS, err := pki.ClientTLS(certs, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := extproc.New(extproc.Config{XDSAddr: xdsAddr, XDSTLS: clientTLS, NodeCluster: ns + "/gw", NodeID: "pod", Logger: log, SessionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	epLis, err := extproc.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go ep.Run(runCtx)
	go ep.Serve(runCtx, epLis)

	d, err := double.Start(runCtx, double.Options{Bootstrap: bootPath, ServiceNode: "pod", ServiceCluster: ns + "/gw", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)

	eventually(t, "ext_proc's policies over mutual TLS", func() error {
		if !ep.Ready() {
			return fmt.Errorf("ext_proc has no policies")
		}
		return nil
	})
	mc := mcp.NewClient(&mcp.Implementation{Name: "kube-test", Version: "1"}, nil)
	eventually(t, "a tool call through the data plane", func() error {
		cs, err := mc.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: fmt.Sprintf("http://127.0.0.1:%d/mcp", gwPort), MaxRetries: -1}, nil)
		if err != nil {
			return err
		}
		defer cs.Close()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "over mTLS"}})
		if err != nil {
			return err
		}
		if len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "over mTLS" {
			return fmt.Errorf("result %+v", res)
		}
		return nil
	})
}

// freePort returns a TCP port free on 127.0.0.1 for a server the test starts (freeport).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Ports("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	return p[0]
}
