package controller

import "testing"

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
