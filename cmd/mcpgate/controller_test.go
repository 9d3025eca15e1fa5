package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// TestPinnedImage pins the sidecar image to the digest the kubelet reports, whatever the
// registry port, tag or runtime prefix.
func TestPinnedImage(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct{ image, imageID, want string }{
		{"ghcr.io/mcpgate/mcpgate:v1", "ghcr.io/mcpgate/mcpgate@" + d, "ghcr.io/mcpgate/mcpgate@" + d},
		{"registry:5000/mcpgate", "docker-pullable://registry:5000/mcpgate@" + d, "registry:5000/mcpgate@" + d},
		{"registry:5000/mcpgate:dev", "registry:5000/mcpgate@" + d, "registry:5000/mcpgate@" + d},
		{"mcpgate@" + d, "mcpgate@" + d, "mcpgate@" + d},
		{"mcpgate:v1", "", "mcpgate:v1"},
		{"mcpgate:v1", "sha256:abcd", "mcpgate:v1"}, // an image ID without a repository: no digest reference
	} {
		if got := pinnedImage(c.image, c.imageID); got != c.want {
			t.Errorf("pinnedImage(%q, %q) = %q, want %q", c.image, c.imageID, got, c.want)
		}
	}
}
