package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
)

// inProcess runs serveChild in this process and returns a child that talks to it.
func inProcess(t *testing.T, kind string) *child {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveChild(kind, inR, outW) }()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	c := &child{pid: os.Getpid(), clockTicks: 100, conns: map[string]*grpc.ClientConn{}, clients: map[string]extprocv3.ExternalProcessorClient{}}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		if k == "unix" {
			v = "unix://" + v
		}
		conn, err := grpc.NewClient(v, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		c.conns[k], c.clients[k] = conn, extprocv3.NewExternalProcessorClient(conn)
	}
	t.Cleanup(func() {
		for _, conn := range c.conns {
			conn.Close()
		}
		inW.Close()
		if err := <-done; err != nil {
			t.Errorf("serveChild(%s): %v", kind, err)
		}
	})
	return c
}

// TestDriver runs the driver briefly against the floor and ext_proc over both sockets: every
// request completes without refusal, and a request with a bad token is reported as an error (the
// driver notices refusals).
func TestDriver(t *testing.T) {
	fl, ep := inProcess(t, "floor"), inProcess(t, "extproc")
	on := benchRoute
	on.Policy = "lab"
	variants := []variant{{"floor", fl, benchRoute, ""}, {"on", ep, on, "eyJhbGciOiJSUzI1NiJ9.e30.x"}, {"off", ep, benchRoute, ""}}
	if _, err := load(variants[1], "tcp", 1, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "refused: 401") {
		t.Fatalf("bad token not reported: %v", err)
	}
	variants[1].token = extproctest.LabToken
	var all []result
	for _, sock := range []string{"tcp", "unix"} {
		for _, v := range variants {
			r, err := load(v, sock, 4, 50*time.Millisecond)
			if err != nil {
				t.Fatalf("%s over %s: %v", v.name, sock, err)
			}
			if r.Errors != 0 || r.Requests == 0 || r.P99ms < r.P50ms {
				t.Errorf("%s over %s: %+v", v.name, sock, r)
			}
			r.Socket, r.Conc, r.Variant = sock, 4, v.name
			all = append(all, r)
		}
	}
	var out bytes.Buffer
	report(&out, all, options{sockets: []string{"tcp", "unix"}, conc: []int{4}})
	if strings.Count(out.String(), "\n") != 8 || !strings.Contains(out.String(), "| unix | 4 | on |") {
		t.Errorf("report:\n%s", out.String())
	}
}
