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
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/structpb"

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

// TestSkipMetadataCodec: the client codec drops dynamic_metadata and keeps everything else.
func TestSkipMetadataCodec(t *testing.T) {
	md, err := structpb.NewStruct(map[string]any{"mcpgate": map[string]any{"tool": "fetch"}})
	if err != nil {
		t.Fatal(err)
	}
	in := &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
			BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("x")}},
		}}},
		DynamicMetadata: md,
	}
	c := skipMetadataCodec{encoding.GetCodecV2(protocodec.Name)}
	wire, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out extprocv3.ProcessingResponse
	if err := c.Unmarshal(wire, &out); err != nil {
		t.Fatal(err)
	}
	if out.GetDynamicMetadata() != nil || string(out.GetRequestBody().GetResponse().GetBodyMutation().GetBody()) != "x" {
		t.Errorf("decoded %v", &out)
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x42, 0x05, 0x01})}, &out); err == nil {
		t.Error("truncated message decoded")
	}
}
