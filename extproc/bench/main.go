// Command bench measures mcpgate's ext_proc service against the floor that the ext_proc protocol
// itself costs. It drives the real gRPC server, over loopback TCP and over a Unix socket, with the
// message sequence Envoy sends for a tools/call whose bodies are buffered (request headers,
// request body, response headers, response body; one stream per request, streams sharing one
// connection), against three servers in interleaved runs:
//
//   - floor: a bare ExternalProcessor that answers CONTINUE to every message;
//   - off:   mcpgate's ext_proc on an MCP route without policy (JSON-RPC parsing, audit line,
//     metrics, metadata);
//   - on:    the same with the lab's policy: JWT (RS256, Strict), the CEL traffic rule
//     jwt.org == "solo.io" and an MCP tool rule.
//
// Each server runs in its own child process (this binary with -serve), so that its CPU time per
// request can be read from /proc. The report gives requests/s, p50 and p99 per concurrency and the
// ratios to the floor of the same round.
//
//	go run ./extproc/bench -duration 700ms -rounds 9 -conc 1,16,256
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	duration, warmup time.Duration
	rounds           int
	conc             []int
	sockets          []string
	jsonOut          string
	// profiles are the server children's profile flags (-cpuprofile PREFIX and the others).
	profiles     []string
	variants     []string
	skipMetadata bool
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	serve := fs.String("serve", "", "child mode: serve floor or extproc and print its addresses")
	cpuProfile := fs.String("cpuprofile", "", "write each server's CPU profile to PREFIX-floor.prof and PREFIX-extproc.prof")
	memProfile := fs.String("memprofile", "", "write each server's allocation profile at its end to PREFIX-floor.mem and PREFIX-extproc.mem")
	mutexProfile := fs.String("mutexprofile", "", "write each server's mutex contention profile at its end to PREFIX-floor.mutex and PREFIX-extproc.mutex")
	o := options{}
	fs.DurationVar(&o.duration, "duration", 700*time.Millisecond, "length of one measured run")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured run before each concurrency level")
	fs.IntVar(&o.rounds, "rounds", 9, "interleaved rounds (floor, on, off in rotating order)")
	conc := fs.String("conc", "1,16,256", "concurrent streams")
	sockets := fs.String("sockets", "tcp,unix", "sockets to measure")
	only := fs.String("variants", "floor,on,off", "servers to measure (floor, on, off)")
	fs.BoolVar(&o.skipMetadata, "skip-metadata", false, "do not decode the replies' dynamic_metadata in the client (Envoy decodes it in C++; the Go client pays ~15 µs for it)")
	fs.StringVar(&o.jsonOut, "json", "", "also write every run as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serve != "" {
		stop, err := startProfiles(*serve, *cpuProfile, *memProfile, *mutexProfile)
		if err != nil {
			return err
		}
		err = serveChild(*serve, os.Stdin, stdout)
		// The parent reads this last line when it stops the child.
		fmt.Fprintln(stdout, readGCStats())
		return errors.Join(err, stop())
	}
	for name, prefix := range map[string]string{"-cpuprofile": *cpuProfile, "-memprofile": *memProfile, "-mutexprofile": *mutexProfile} {
		if prefix != "" {
			o.profiles = append(o.profiles, name, prefix)
		}
	}
	for _, c := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			return fmt.Errorf("-conc %q: want positive integers", *conc)
		}
		o.conc = append(o.conc, n)
	}
	o.sockets = strings.Split(*sockets, ",")
	o.variants = strings.Split(*only, ",")
	return measure(o, stdout)
}

// startProfiles starts the profiles of the server kind that have a file prefix, and returns the
// function that writes them at the server's end: the CPU profile, the allocations (every
// allocation since the start, the pprof "allocs" profile) and the mutex contention (every
// contention event).
func startProfiles(kind, cpu, mem, mutex string) (stop func() error, err error) {
	var cpuFile *os.File
	if cpu != "" {
		if cpuFile, err = os.Create(cpu + "-" + kind + ".prof"); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpuFile); err != nil {
			cpuFile.Close()
			return nil, err
		}
	}
	if mutex != "" {
		runtime.SetMutexProfileFraction(1)
	}
	write := func(prefix, suffix, profile string) error {
		if prefix == "" {
			return nil
		}
		f, err := os.Create(prefix + "-" + kind + suffix)
		if err != nil {
			return err
		}
		return errors.Join(pprof.Lookup(profile).WriteTo(f, 0), f.Close())
	}
	return func() error {
		var errs []error
		if cpuFile != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpuFile.Close())
		}
		errs = append(errs, write(mem, ".mem", "allocs"), write(mutex, ".mutex", "mutex"))
		return errors.Join(errs...)
	}, nil
}

// gcStats is what a server child's garbage collector did over its life.
type gcStats struct {
	// Cycles is the number of collections, AllocBytes the bytes allocated.
	Cycles, AllocBytes uint64
	// CPU is the CPU time the collector used, IdleCPU the part of it spent marking on processors
	// that had nothing else to run (which, on a shared machine, other processes could have used).
	CPU, IdleCPU float64
}

func (g gcStats) String() string {
	return fmt.Sprintf("gc cycles=%d alloc_bytes=%d cpu_s=%g idle_cpu_s=%g", g.Cycles, g.AllocBytes, g.CPU, g.IdleCPU)
}

// readGCStats reads this process's gcStats.
func readGCStats() gcStats {
	samples := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/allocs:bytes"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}}
	metrics.Read(samples)
	return gcStats{Cycles: samples[0].Value.Uint64(), AllocBytes: samples[1].Value.Uint64(),
		CPU: samples[2].Value.Float64(), IdleCPU: samples[3].Value.Float64()}
}

// parseGCStats reads a gcStats line.
func parseGCStats(line string) (gcStats, error) {
	var g gcStats
	_, err := fmt.Sscanf(strings.TrimSpace(line), "gc cycles=%d alloc_bytes=%d cpu_s=%g idle_cpu_s=%g", &g.Cycles, &g.AllocBytes, &g.CPU, &g.IdleCPU)
	return g, err
}

// The route and policy of the measured requests.
var (
	benchRoute = extproctest.Route{
		Gateway: "agentgateway-system/agentgateway", Route: "agentgateway-system/mcp/rule/0",
		MCP: "streamable-http", Backend: "agentgateway-system/mcp-backend", Target: "mcp-target",
	}
	labPolicy = &policyv1.Policy{
		Name: "lab",
		Jwt: &policyv1.JWTAuthentication{Providers: []*policyv1.JWTProvider{
			{Issuer: "solo.io", Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: extproctest.LabJWKS}},
		}},
		TrafficRules: []*policyv1.Rule{{Expression: `jwt.org == "solo.io"`, Source: "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac#0"}},
		McpRules:     []*policyv1.Rule{{Expression: `mcp.tool.name in ["fetch", "echo"]`, Source: "AgentgatewayPolicy/agentgateway-system/tools#0"}},
	}
)

// serveChild serves one kind of server on a loopback TCP port and a Unix socket, prints
// "tcp=ADDR unix=PATH", and serves until stdin closes (the parent went away).
func serveChild(kind string, stdin io.Reader, stdout io.Writer) error {
	dir, err := os.MkdirTemp("", "mcpgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "ep.sock")
	tcp, err := extproc.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	unix, err := extproc.Listen("unix://" + sock)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	switch kind {
	case "floor":
		gs := grpc.NewServer()
		extprocv3.RegisterExternalProcessorServer(gs, floor{})
		go func() { errc <- gs.Serve(tcp) }()
		go func() { errc <- gs.Serve(unix) }()
		defer gs.Stop()
	case "extproc":
		// Audit lines go to /dev/null: the write is paid, the disk is not filled.
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer devnull.Close()
		srv, err := extproc.New(extproc.Config{Audit: devnull, SessionKey: extproctest.SessionKey(), Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
		if err != nil {
			return err
		}
		defer srv.Close()
		a, err := anypb.New(labPolicy)
		if err != nil {
			return err
		}
		if err := srv.HandlePolicies(contract.PolicyTypeURL, map[string]*anypb.Any{"lab": a}); err != nil {
			return err
		}
		go func() { errc <- srv.Serve(ctx, tcp, unix) }()
	default:
		return fmt.Errorf("-serve %q: want floor or extproc", kind)
	}
	fmt.Fprintf(stdout, "tcp=%s unix=%s\n", tcp.Addr(), sock)
	go func() { io.Copy(io.Discard, stdin); cancel(); errc <- nil }()
	return <-errc
}

// floor answers CONTINUE to every message: the cost of the protocol alone.
type floor struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (floor) Process(ps extprocv3.ExternalProcessor_ProcessServer) error {
	empty := &extprocv3.CommonResponse{}
	for {
		req, err := ps.Recv()
		if err != nil {
			return nil
		}
		var resp extprocv3.ProcessingResponse
		switch req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: empty}}
		case *extprocv3.ProcessingRequest_RequestBody:
			resp.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: empty}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp.Response = &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: empty}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: empty}}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp.Response = &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp.Response = &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}
		}
		if err := ps.Send(&resp); err != nil {
			return nil
		}
	}
}

// child is a server process.
type child struct {
	name  string // the server it runs: floor or extproc
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// stdout gives the child's addresses, then, when it ends, its gcStats.
	stdout *bufio.Reader
	// served counts the requests sent to the child; stopped is set by stop.
	served     int
	stopped    bool
	conns      map[string]*grpc.ClientConn
	clients    map[string]extprocv3.ExternalProcessorClient
	pid        int
	clockTicks float64
}

func startChild(kind string, profiles []string, skipMetadata bool) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"-serve", kind}, profiles...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stdout := bufio.NewReader(out)
	line, err := stdout.ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s server: %w", kind, err)
	}
	c := &child{name: kind, cmd: cmd, stdin: stdin, stdout: stdout, pid: cmd.Process.Pid, clockTicks: 100,
		conns: map[string]*grpc.ClientConn{}, clients: map[string]extprocv3.ExternalProcessorClient{}}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		target := v
		if k == "unix" {
			target = "unix://" + v
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if skipMetadata {
			opts = append(opts, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(skipMetadataCodec{encoding.GetCodecV2(protocodec.Name)})))
		}
		conn, err := grpc.NewClient(target, opts...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.conns[k], c.clients[k] = conn, extprocv3.NewExternalProcessorClient(conn)
	}
	return c, nil
}

// stop closes the connections to the child and its stdin, waits for it to end and returns what
// its collector did. A second call does nothing.
func (c *child) stop() (gcStats, error) {
	if c.stopped {
		return gcStats{}, nil
	}
	c.stopped = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.stdin.Close()
	line, readErr := c.stdout.ReadString('\n')
	if err := c.cmd.Wait(); err != nil {
		return gcStats{}, fmt.Errorf("%s server: %w", c.name, err)
	}
	if readErr != nil {
		return gcStats{}, fmt.Errorf("%s server's gc stats: %w", c.name, readErr)
	}
	return parseGCStats(line)
}

// close stops the child (see stop) on the way out of an error, reporting what fails.
func (c *child) close() {
	if _, err := c.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}

// skipMetadata decodes replies without their dynamic_metadata (ProcessingResponse field 8), which
// the driver does not read: the client then costs what Envoy's C++ decoding costs rather than
// Go's reflection over a Struct map.
type skipMetadataCodec struct{ std encoding.CodecV2 }

func (c skipMetadataCodec) Name() string { return protocodec.Name }

func (c skipMetadataCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

func (c skipMetadataCodec) Unmarshal(data mem.BufferSlice, v any) error {
	resp, ok := v.(*extprocv3.ProcessingResponse)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	b := data.Materialize()
	kept := make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if num != 8 {
			kept = append(kept, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return proto.Unmarshal(kept, resp)
}

// cpu returns the child's user+system CPU time.
func (c *child) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return time.Duration((ut + st) / c.clockTicks * float64(time.Second))
}

// variant is one of the measured servers.
type variant struct {
	name  string
	srv   *child
	route extproctest.Route
	token string
}

// result is one measured run.
type result struct {
	// Socket is the socket measured: "tcp" or "unix".
	Socket string `json:"socket"`
	// Conc is the number of concurrent streams.
	Conc int `json:"conc"`
	// Variant is the server measured: "floor", "off" or "on".
	Variant string `json:"variant"`
	// Round is the round's index, from 0.
	Round int `json:"round"`
	// Requests is how many requests completed without error.
	Requests int `json:"requests"`
	// Errors is how many requests failed.
	Errors int `json:"errors"`
	// RPS is the completed requests per second of the run.
	RPS float64 `json:"rps"`
	// P50ms is the median latency of the completed requests, in milliseconds.
	P50ms float64 `json:"p50_ms"`
	// P99ms is the 99th percentile latency of the completed requests, in milliseconds.
	P99ms float64 `json:"p99_ms"`
	// CPUPerReqUs is the server child's CPU per completed request, in microseconds.
	CPUPerReqUs float64 `json:"server_cpu_us_per_request"`
	// ClientCPUPerReqUs is this process's CPU (the Envoy side) per request.
	ClientCPUPerReqUs float64 `json:"client_cpu_us_per_request"`
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measure(o options, stdout io.Writer) error {
	fl, err := startChild("floor", o.profiles, o.skipMetadata)
	if err != nil {
		return err
	}
	defer fl.close()
	ep, err := startChild("extproc", o.profiles, o.skipMetadata)
	if err != nil {
		return err
	}
	defer ep.close()
	onRoute := benchRoute
	onRoute.Policy = "lab"
	var variants []variant
	for _, v := range []variant{
		{name: "floor", srv: fl, route: benchRoute},
		{name: "on", srv: ep, route: onRoute, token: extproctest.LabToken},
		{name: "off", srv: ep, route: benchRoute},
	} {
		if slices.Contains(o.variants, v.name) {
			variants = append(variants, v)
		}
	}
	var all []result
	for _, sock := range o.sockets {
		for _, conc := range o.conc {
			for _, v := range variants {
				if _, err := load(v, sock, conc, o.warmup); err != nil {
					return err
				}
			}
			for round := range o.rounds {
				for i := range variants {
					v := variants[(i+round)%len(variants)]
					before, selfBefore := v.srv.cpu(), selfCPU()
					r, err := load(v, sock, conc, o.duration)
					if err != nil {
						return err
					}
					r.Socket, r.Conc, r.Variant, r.Round = sock, conc, v.name, round
					if r.Requests > 0 {
						r.CPUPerReqUs = float64(v.srv.cpu()-before) / float64(time.Microsecond) / float64(r.Requests)
						r.ClientCPUPerReqUs = float64(selfCPU()-selfBefore) / float64(time.Microsecond) / float64(r.Requests)
					}
					fmt.Fprintf(os.Stderr, "%-4s conc %3d %-5s round %d: %7.0f req/s p50 %6.2f ms p99 %6.2f ms cpu %5.1f µs/req (client %5.1f) errors %d\n",
						sock, conc, v.name, round, r.RPS, r.P50ms, r.P99ms, r.CPUPerReqUs, r.ClientCPUPerReqUs, r.Errors)
					all = append(all, r)
				}
			}
		}
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	report(stdout, all, o)
	// peak resident memory of each server process over the whole run (Linux's VmHWM)
	for _, c := range []*child{fl, ep} {
		if kb, err := c.peakRSSKiB(); err == nil {
			fmt.Fprintf(stdout, "\npeak resident memory of %s: %.1f MiB", c.name, float64(kb)/1024)
		}
	}
	for _, c := range []*child{fl, ep} {
		g, err := c.stop()
		if err != nil {
			return err
		}
		if n := float64(c.served); n > 0 {
			fmt.Fprintf(stdout, "\ngarbage collection in %s over %d requests: %.1f cycles per 1,000 requests, %.1f KiB allocated and %.1f µs of collector CPU per request (%.1f µs of it marking on idle processors)",
				c.name, c.served, float64(g.Cycles)*1000/n, float64(g.AllocBytes)/1024/n, g.CPU*1e6/n, g.IdleCPU*1e6/n)
		}
	}
	fmt.Fprintln(stdout)
	return nil
}

// peakRSSKiB returns the child's peak resident set size (VmHWM of /proc/PID/status) in KiB.
func (c *child) peakRSSKiB() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no VmHWM in /proc/%d/status", c.name, c.pid)
}

// serverSession is the MCP server's session id; the client holds it sealed (package bind).
const serverSession = "OPCAI5PJURGN4ASUWVV56SWYUW"

// Envoy's messages for a tools/call of the lab's fetch tool.
var (
	callBody   = []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://httpbin.org/get"}}}`)
	answerBody = []byte(`{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"{\"args\":{},\"headers\":{\"Host\":\"httpbin.org\"},\"url\":\"https://httpbin.org/get\"}"}]}}`)
)

func requestHeaders(token string) []extproctest.Header {
	// The client holds the session sealed for its caller: the lab's token (the only one the
	// benchmark sends), or no one.
	session := extproctest.AnonSession(serverSession)
	if token != "" {
		session = extproctest.LabSession(serverSession)
	}
	hs := []extproctest.Header{
		{Name: ":authority", Value: "127.0.0.1:8080"}, {Name: ":path", Value: "/mcp"}, {Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"}, {Name: "content-type", Value: "application/json"},
		{Name: "accept", Value: "application/json, text/event-stream"}, {Name: "content-length", Value: strconv.Itoa(len(callBody))},
		{Name: "mcp-session-id", Value: session}, {Name: "mcp-protocol-version", Value: "2025-11-25"},
		{Name: "user-agent", Value: "node"}, {Name: "x-forwarded-proto", Value: "http"},
		{Name: "x-request-id", Value: "8a1c4d6e-1111-2222-3333-444455556666"},
	}
	if token != "" {
		hs = append(hs, extproctest.Header{Name: "authorization", Value: "Bearer " + token})
	}
	return hs
}

// responseHeaders are the MCP server's answer headers of the tools/call.
func responseHeaders() []extproctest.Header {
	return []extproctest.Header{
		{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/json"},
		{Name: "content-length", Value: strconv.Itoa(len(answerBody))}, {Name: "mcp-session-id", Value: serverSession},
		{Name: "date", Value: "Mon, 01 Jun 2026 10:00:00 GMT"},
	}
}

// oneRequest plays one tools/call through ext_proc as Envoy does.
func oneRequest(ctx context.Context, c extprocv3.ExternalProcessorClient, route extproctest.Route, reqHeaders, respHeaders []extproctest.Header) error {
	s, err := extproctest.Open(ctx, c, route)
	if err != nil {
		return err
	}
	defer s.Close()
	steps := []func() (*extprocv3.ProcessingResponse, error){
		func() (*extprocv3.ProcessingResponse, error) { return s.RequestHeaders(reqHeaders, false) },
		func() (*extprocv3.ProcessingResponse, error) { return s.RequestBody(callBody, true) },
		func() (*extprocv3.ProcessingResponse, error) { return s.ResponseHeaders(respHeaders, false) },
		func() (*extprocv3.ProcessingResponse, error) { return s.ResponseBody(answerBody, true) },
	}
	for i, step := range steps {
		resp, err := step()
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if ir := resp.GetImmediateResponse(); ir != nil {
			return fmt.Errorf("message %d refused: %d %s", i, ir.GetStatus().GetCode(), ir.GetBody())
		}
	}
	return nil
}

// load runs conc workers that each play requests back to back for d.
func load(v variant, sock string, conc int, d time.Duration) (result, error) {
	c := v.srv.clients[sock]
	if c == nil {
		return result{}, fmt.Errorf("no %s socket", sock)
	}
	hs, rhs := requestHeaders(v.token), responseHeaders()
	ctx := context.Background()
	// A first request checks the setup (a refusal here is a broken benchmark, not a result).
	if err := oneRequest(ctx, c, v.route, hs, rhs); err != nil {
		return result{}, fmt.Errorf("%s over %s: %w", v.name, sock, err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var firstErr error
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			nerr := 0
			var ferr error
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := oneRequest(ctx, c, v.route, hs, rhs); err != nil {
					nerr++
					if ferr == nil {
						ferr = err
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += nerr
			if firstErr == nil {
				firstErr = ferr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	v.srv.served += 1 + len(lat) + errs
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "bench: %s over %s: %d errors, first: %v\n", v.name, sock, errs, firstErr)
	}
	slices.Sort(lat)
	r := result{Requests: len(lat), Errors: errs, RPS: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		r.P50ms = ms(lat[len(lat)/2])
		r.P99ms = ms(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	if len(lat) == 0 {
		return r, errors.New("no request completed")
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report prints, per socket and concurrency, the medians over the rounds and the medians of the
// per-round ratios to the floor.
func report(w io.Writer, all []result, o options) {
	fmt.Fprintf(w, "| socket | streams | server | requests/s | p50 ms | p99 ms | server CPU µs/req | client CPU µs/req | req/s ÷ floor | p99 ÷ floor |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sock := range o.sockets {
		for _, conc := range o.conc {
			byRound := map[string]map[int]result{}
			for _, r := range all {
				if r.Socket == sock && r.Conc == conc {
					if byRound[r.Variant] == nil {
						byRound[r.Variant] = map[int]result{}
					}
					byRound[r.Variant][r.Round] = r
				}
			}
			for _, name := range []string{"floor", "off", "on"} {
				if len(byRound[name]) == 0 {
					continue
				}
				var rps, p50, p99, cpu, client, rpsRatio, p99Ratio []float64
				for round, r := range byRound[name] {
					f := byRound["floor"][round]
					rps, p50, p99, cpu = append(rps, r.RPS), append(p50, r.P50ms), append(p99, r.P99ms), append(cpu, r.CPUPerReqUs)
					client = append(client, r.ClientCPUPerReqUs)
					if f.RPS > 0 && f.P99ms > 0 {
						rpsRatio = append(rpsRatio, r.RPS/f.RPS)
						p99Ratio = append(p99Ratio, r.P99ms/f.P99ms)
					}
				}
				fmt.Fprintf(w, "| %s | %d | %s | %.0f | %.2f | %.2f | %.0f | %.0f | %.2f | %.2f |\n",
					sock, conc, name, median(rps), median(p50), median(p99), median(cpu), median(client), median(rpsRatio), median(p99Ratio))
			}
		}
	}
}
