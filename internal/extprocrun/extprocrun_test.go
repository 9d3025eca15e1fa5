package extprocrun

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// TestSessionKeyFile: a session key file that cannot be read or is too short stops ext_proc
// from starting, with an error naming the flag and the file.
func TestSessionKeyFile(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		short:                                 "--session-key-file " + short + ": 10 bytes; a session key has at least 32",
		filepath.Join(t.TempDir(), "missing"): "--session-key-file: open ",
	} {
		o := &Options{SessionKeyFile: path, MaxBodyBytes: 1 << 20, AuditLog: "none"}
		if _, _, err := o.Start(t.Context(), extproc.Config{}, io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", path, err, want)
		}
	}
}

// TestMuxUpstreamOf: --mux-upstream is every Gateway's mux upstream; without it each Gateway has
// its own socket, where `mcpgate bootstrap` has its Envoy bind it by default.
func TestMuxUpstreamOf(t *testing.T) {
	if got := muxUpstreamOf("unix:///run/up.sock")("ns/gw"); got != "unix:///run/up.sock" {
		t.Errorf("upstream of ns/gw with --mux-upstream: %q", got)
	}
	if got := muxUpstreamOf("")("ns/gw"); got != bootstrap.MuxUpstreamAddr("", "ns/gw") || !strings.HasPrefix(got, "unix:///") || !strings.HasSuffix(got, ".sock") {
		t.Errorf("upstream of ns/gw by default: %q, want the gateway's socket", got)
	}
}
