package double_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// TestGlobalConnectionLimit: with the bootstrap's overload manager bounding downstream
// connections (here to 1, instead of bootstrap.MaxDownstreamConnections), a listener closes a
// connection it accepts while the limit is reached, and admits one again once a connection ended.
func TestGlobalConnectionLimit(t *testing.T) {
	e := newEnvBoot(t, answer(nil), func(y []byte) []byte {
		from := fmt.Sprintf("max_active_downstream_connections: \"%d\"", bootstrap.MaxDownstreamConnections)
		if !bytes.Contains(y, []byte(from)) {
			t.Fatalf("the bootstrap has no %s", from)
		}
		return bytes.Replace(y, []byte(from), []byte(`max_active_downstream_connections: "1"`), 1)
	})
	up := echo(t, "a")
	name := listener(t, e.listen, nil, nil).Name
	e.push(listener(t, e.listen, nil, nil), routeConfig(name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "a", nil))),
		staticCluster("a", up.Listener.Addr().String()))

	// dial opens a connection to the listener; get sends a GET on it and returns the status
	// line, or "" when the connection is closed without an answer.
	dial := func() net.Conn {
		c, err := net.Dial("tcp", e.listen)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	get := func(c net.Conn) string {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return ""
		}
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf := make([]byte, len("HTTP/1.1 200"))
		if _, err := io.ReadFull(c, buf); err != nil {
			return ""
		}
		return string(buf)
	}
	first := dial()
	if got := get(first); got != "HTTP/1.1 200" {
		t.Fatalf("first connection: %q, want HTTP/1.1 200", got)
	}
	if got := get(dial()); got != "" {
		t.Errorf("a second connection while the first is open: %q, want it closed unanswered", got)
	}
	first.Close()
	waitFor(t, "a new connection to be admitted once the first closed", func() bool { return get(dial()) == "HTTP/1.1 200" })
}
