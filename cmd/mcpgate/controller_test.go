package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/translator"
)

// TestControllerRefusesBadInvocations checks the errors `mcpgate controller` gives before it
// connects to a cluster. The controller itself runs against a real API server in
// provider/kubernetes's tests.
func TestControllerRefusesBadInvocations(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	t.Setenv("POD_NAME", "")
	t.Setenv("KUBECONFIG", "")
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-secret}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--log-level", "loud"}, `invalid value "loud" for flag -log-level`},
		{[]string{"--gateway-service-type", "External"}, "--gateway-service-type"},
		{[]string{"--kubeconfig", filepath.Join(dir, "missing")}, "kubeconfig"},
		{[]string{"--kubeconfig", kubeconfig}, "--extproc-image not given and this pod's image unknown: POD_NAMESPACE and POD_NAME are not set"},
	} {
		err := runController(context.Background(), c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// TestControllerFlags: each flag of mcpgate controller reaches the option it names (a flag bound
// to nothing, or to another option, would pass every test that runs the controller with its
// defaults), and --deploy-data-plane=false leaves no data plane.
func TestControllerFlags(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "from-env")
	c, err := parseControllerFlags([]string{
		"--kubeconfig", "/k", "--xds-addr", ":1", "--admin-addr", ":2", "--leader-elect",
		"--leader-election-namespace", "le-ns", "--controller-name", "example.org/ctl", "--cluster-domain", "corp.example",
		"--upstream-ca-file", "/etc/envoy/ca.pem",
		"--xds-service", "xds.example:3", "--envoy-image", "envoy:x", "--extproc-image", "mcpgate:y",
		"--gateway-service-type", "NodePort", "--xds-tls=false", "--log-level", "debug",
		"--gateway-class", "a", "--gateway-class", "b", "--namespace", "n1", "--namespace", "n2",
	})
	if err != nil {
		t.Fatal(err)
	}
	dp := c.opts.DataPlane
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"kubeconfig", c.kubeconfig, "/k"}, {"xds-addr", c.xdsAddr, ":1"}, {"admin-addr", c.adminAddr, ":2"},
		{"leader-elect", c.opts.LeaderElection, true}, {"leader-election-namespace", c.opts.LeaderElectionNamespace, "le-ns"},
		{"leader-election-namespace (CA)", c.leNamespace, "le-ns"}, {"controller-name", c.opts.ControllerName, "example.org/ctl"},
		{"cluster-domain", c.opts.Translator.ClusterDomain, "corp.example"}, {"upstream-ca-file", c.opts.Translator.UpstreamCAFile, "/etc/envoy/ca.pem"}, {"xds-service", c.xdsService, "xds.example:3"},
		{"xds-service (data plane)", dp.XDSAddress, "xds.example:3"}, {"envoy-image", dp.EnvoyImage, "envoy:x"},
		{"extproc-image", c.extprocImage, "mcpgate:y"}, {"gateway-service-type", string(dp.ServiceType), "NodePort"},
		{"xds-tls", c.xdsTLS, false}, {"log-level", c.level.String(), "DEBUG"},
		{"gateway-class", strings.Join(c.opts.GatewayClasses, ","), "a,b"}, {"namespace", strings.Join(c.opts.Namespaces, ","), "n1,n2"},
	} {
		if f.got != f.want {
			t.Errorf("--%s: got %v, want %v", f.name, f.got, f.want)
		}
	}
	c, err = parseControllerFlags([]string{"--deploy-data-plane=false"})
	if err != nil {
		t.Fatal(err)
	}
	if c.opts.DataPlane != nil || c.opts.LeaderElectionNamespace != "from-env" || c.opts.Translator.ClusterDomain != "cluster.local" || !c.xdsTLS ||
		c.opts.Translator.UpstreamCAFile != translator.DefaultUpstreamCAFile {
		t.Errorf("defaults: data plane %v, lease namespace %q, cluster domain %q, xds-tls %v", c.opts.DataPlane, c.opts.LeaderElectionNamespace, c.opts.Translator.ClusterDomain, c.xdsTLS)
	}
}
