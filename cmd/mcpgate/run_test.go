package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/internal/standalone"
	"github.com/mcpgate/mcpgate/internal/syncbuf"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds/client"
)

// waitFor bounds every wait of these tests: what does not happen by then is a failure.
const waitFor = 20 * time.Second

// eventually calls f until it returns nil or waitFor passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// started is a `mcpgate run` running in the test.
type started struct {
	cfg  *runConfig
	logs *syncbuf.Buffer
	done chan error
	stop context.CancelFunc
}

// startRun runs standalone.Serve with the flags args plus free addresses, until the test ends.
func startRun(t *testing.T, args ...string) *started {
	t.Helper()
	args = append(args, "--xds-addr", freePort(t), "--extproc-addr", freePort(t), "--admin-addr", freePort(t), "--envoy-admin-addr", freePort(t), "--mux-addr", freePort(t))
	cfg, err := parseRunFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	s := &started{cfg: cfg, logs: &syncbuf.Buffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() { s.done <- standalone.Serve(ctx, cfg.config(), log, io.Discard, s.logs) }()
	t.Cleanup(func() {
		if s.shutdown() != nil {
			t.Errorf("mcpgate run did not stop")
		}
		if t.Failed() {
			t.Logf("logs of mcpgate run:\n%s", s.logs)
		}
	})
	eventually(t, "mcpgate run ready", func() error {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("standalone.Serve returned: %v", err)
		default:
		}
		code, body, err := get("http://" + cfg.admin + "/readyz")
		if err == nil && code != 200 {
			err = fmt.Errorf("/readyz: %d %s", code, body)
		}
		return err
	})
	return s
}

// shutdown stops standalone.Serve and returns its error, or an error when it does not return in time.
func (s *started) shutdown() error {
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(waitFor):
		return fmt.Errorf("timeout")
	}
}

// debug returns the run's /debug/xds.
func (s *started) debug(t *testing.T) string {
	t.Helper()
	_, body, err := get("http://" + s.cfg.admin + "/debug/xds")
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// logged waits for a line of the run's log that holds every part.
func (s *started) logged(t *testing.T, what string, parts ...string) {
	t.Helper()
	eventually(t, what, func() error {
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if all(line, parts) {
				return nil
			}
		}
		return fmt.Errorf("no log line with %q", parts)
	})
}

// copyLab copies the lab's example manifests into a temporary folder.
func copyLab(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, _ := filepath.Glob("../../examples/mcp-connectivity/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example manifests")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const labGateway = "agentgateway-system/agentgateway"

// routeConfigs subscribes to the route configurations of group over Delta ADS with package
// client and returns a function giving the latest set.
func routeConfigs(t *testing.T, xdsAddr, group string) func() []*routev3.RouteConfiguration {
	var mu sync.Mutex
	var latest []*routev3.RouteConfiguration
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		_ = client.Run(ctx, client.Config{
			Addr: xdsAddr, Node: &corev3.Node{Id: "test", Cluster: group}, TypeURLs: []string{resourcev3.RouteType},
			Handler: func(_ string, res map[string]*anypb.Any) error {
				var got []*routev3.RouteConfiguration
				for _, a := range res {
					var rc routev3.RouteConfiguration
					if err := a.UnmarshalTo(&rc); err != nil {
						return err
					}
					got = append(got, &rc)
				}
				mu.Lock()
				latest = got
				mu.Unlock()
				return nil
			},
		})
	}()
	return func() []*routev3.RouteConfiguration {
		mu.Lock()
		defer mu.Unlock()
		return latest
	}
}

// allRoutes returns the routes of route configurations.
func allRoutes(rcs []*routev3.RouteConfiguration) []*routev3.Route {
	var out []*routev3.Route
	for _, rc := range rcs {
		for _, vh := range rc.GetVirtualHosts() {
			out = append(out, vh.GetRoutes()...)
		}
	}
	return out
}

// routes returns a function giving the path prefixes of the HTTPRoutes' matches in the latest
// route configurations of group: one per match, also where a match has several routes (a
// bridged SSE target's, named httproute/.../match/J/SUFFIX). Other routes (the refusal every
// virtual host starts with, the mux upstream listener's) are left out.
func routes(t *testing.T, xdsAddr, group string) func() []string {
	latest := routeConfigs(t, xdsAddr, group)
	return func() []string {
		var got []string
		seen := map[string]bool{}
		for _, r := range allRoutes(latest()) {
			match := r.GetName()
			if !strings.HasPrefix(match, "httproute/") {
				continue
			}
			if i := strings.LastIndex(match, "/match/"); i >= 0 {
				if j := strings.IndexByte(match[i+len("/match/"):], '/'); j >= 0 {
					match = match[:i+len("/match/")+j]
				}
			}
			if seen[match] {
				continue
			}
			seen[match] = true
			got = append(got, r.GetMatch().GetPrefix()+r.GetMatch().GetPath()+r.GetMatch().GetPathSeparatedPrefix())
		}
		return got
	}
}

// TestRun runs `mcpgate run` on the lab's manifests: admin endpoints, reflection, xDS to a
// client, an edit pushed, and a bad edit refused with its file, object and field while the rest
// keeps being served.
func TestRun(t *testing.T) {
	dir := copyLab(t)
	s := startRun(t, "-f", dir, "--no-envoy")

	if code, body, err := get("http://" + s.cfg.admin + "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz: %d %s %v", code, body, err)
	}
	if _, body, err := get("http://" + s.cfg.admin + "/metrics"); err != nil ||
		!strings.Contains(body, "mcpgate_config_problems 0") || !strings.Contains(body, "mcpgate_xds_snapshot_version 1") {
		t.Errorf("/metrics lacks mcpgate_config_problems 0 or mcpgate_xds_snapshot_version 1: %v\n%s", err, body)
	}
	if _, body, err := get("http://" + s.cfg.admin + "/debug/xds"); err != nil || !strings.Contains(body, `"`+labGateway+`/8080"`) {
		t.Errorf("/debug/xds lacks the listener %s/8080: %v\n%s", labGateway, err, body)
	}
	if strings.Contains(s.logs.String(), "no data plane runs") {
		t.Errorf("a warning that no data plane runs, with --no-envoy")
	}

	cc, err := grpc.NewClient(s.cfg.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if r, err := rs.Recv(); err != nil || !strings.Contains(r.String(), "envoy.service.discovery.v3.AggregatedDiscoveryService") {
		t.Errorf("reflection: %v %v", r, err)
	}

	prefixes := routes(t, s.cfg.xdsAddr, labGateway)
	eventually(t, "the lab's route", func() error {
		if got := prefixes(); len(got) != 1 || got[0] != "/" {
			return fmt.Errorf("routes %q", got)
		}
		return nil
	})

	extra := `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: extra, namespace: agentgateway-system}
spec:
  parentRefs: [{name: agentgateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /extra}}]
    backendRefs: [{name: mcp-backend, group: agentgateway.dev, kind: AgentgatewayBackend}]
`
	if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the added route", func() error {
		if got := prefixes(); len(got) != 2 {
			return fmt.Errorf("routes %q", got)
		}
		return nil
	})

	bad := strings.Replace(extra, "name: extra,", "name: bad,", 1)
	bad = strings.Replace(bad, "backendRefs: [{name: mcp-backend,", "backendRefs: [{name: no-such-backend,", 1)
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bad route refused with file, object and field", func() error {
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(line, "refused: ") && strings.Contains(line, "bad.yaml") &&
				strings.Contains(line, "HTTPRoute agentgateway-system/bad") && strings.Contains(line, "spec.rules[0].backendRefs[0]") {
				return nil
			}
		}
		return fmt.Errorf("no such log line")
	})
	if got := prefixes(); len(got) < 2 {
		t.Errorf("the good routes are no longer served: %q", got)
	}
	eventually(t, "/metrics counting the refused route", func() error {
		_, body, err := get("http://" + s.cfg.admin + "/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "mcpgate_config_problems 1\n") {
			return fmt.Errorf("/metrics does not count one problem:\n%s", body)
		}
		return nil
	})
	if err := s.shutdown(); err != nil {
		t.Errorf("standalone.Serve: %v", err)
	}
}

// TestRunStartsEnvoy runs `mcpgate run` with the Envoy test double as its Envoy: it is started
// with the gateway's bootstrap, takes its listener over xDS, and is stopped with mcpgate.
// envoyBin is the data plane of the tests that start one: $ENVOY_BIN, else the test double built
// from test/envoydouble.
func envoyBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "envoydouble")
	if out, err := exec.Command("go", "build", "-o", bin, "../../test/envoydouble").CombinedOutput(); err != nil {
		t.Fatalf("building the Envoy test double: %v\n%s", err, out)
	}
	return bin
}

// labOnPort copies the lab's manifests with its Gateway's listener on the port of addr.
func labOnPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	dir := copyLab(t)
	gw, err := os.ReadFile(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), bytes.Replace(gw, []byte("port: 8080"), []byte("port: "+port), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRunListenerPortInUse: a Gateway listener whose port is taken is rejected by the data plane
// (a NACK of the listener update): mcpgate logs it as an error and /readyz says so, until an
// edit moves the listener to a free port.
func TestRunListenerPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := labOnPort(t, taken.Addr().String())
	s := startRun(t, "-f", dir, "--envoy-bin", envoyBin(t))
	eventually(t, "/readyz naming the rejected listener", func() error {
		code, body, err := get("http://" + s.cfg.admin + "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "the data plane rejected the configuration") ||
			!strings.Contains(body, resourcev3.ListenerType) || !strings.Contains(body, taken.Addr().String()) {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		return nil
	})
	nack := []string{"level=ERROR", "xDS NACK", "type=" + resourcev3.ListenerType, taken.Addr().String()}
	if !slices.ContainsFunc(strings.Split(s.logs.String(), "\n"), func(line string) bool { return all(line, nack) }) {
		t.Errorf("no log line with %q:\n%s", nack, s.logs.String())
	}
	free := freePort(t)
	_, port, _ := net.SplitHostPort(free)
	_, takenPort, _ := net.SplitHostPort(taken.Addr().String())
	b, err := os.ReadFile(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), bytes.Replace(b, []byte("port: "+takenPort), []byte("port: "+port), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/readyz once the listener binds", func() error {
		if code, body, err := get("http://" + s.cfg.admin + "/readyz"); err != nil || code != http.StatusOK {
			return fmt.Errorf("/readyz %d %q %v", code, body, err)
		}
		c, err := net.Dial("tcp", free)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err := s.shutdown(); err != nil {
		t.Errorf("standalone.Serve: %v", err)
	}
}

func TestRunStartsEnvoy(t *testing.T) {
	listener := freePort(t)
	dir := labOnPort(t, listener)
	s := startRun(t, "-f", dir, "--envoy-bin", envoyBin(t))
	eventually(t, "Envoy's listener "+listener, func() error {
		c, err := net.Dial("tcp", listener)
		if err == nil {
			c.Close()
		}
		return err
	})
	if !strings.Contains(s.logs.String(), "starting Envoy") {
		t.Errorf("no log of Envoy's start")
	}
	if err := s.shutdown(); err != nil {
		t.Errorf("standalone.Serve: %v", err)
	}
	if c, err := net.Dial("tcp", listener); err == nil {
		c.Close()
		t.Errorf("Envoy still listens after mcpgate stopped")
	}
}

func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-f", "x", "extra"}, {"-f", "x", "--envoy-admin-addr", "localhost"}} {
		if _, err := parseRunFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	// Port 0 would give the second Gateway's Envoy port 1.
	if _, err := parseRunFlags([]string{"-f", "x", "--envoy-admin-addr", "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "--envoy-admin-addr") {
		t.Errorf("--envoy-admin-addr with port 0: %v", err)
	}
	c, err := parseRunFlags([]string{"-f", "a", "-f", "b", "--envoy-arg", "--concurrency", "--envoy-arg", "2"})
	if err != nil || len(c.files) != 2 || len(c.envoyArgs) != 2 || c.xdsAddr != "127.0.0.1:18000" || c.admin != "127.0.0.1:19000" || c.bindAddress != "127.0.0.1" {
		t.Errorf("%+v %v", c, err)
	}
	// --upstream-ca-file: absolute (Envoy reads it from its own working directory), the default
	// bundle without it, and a file named that is not there refused at start.
	if c.upstreamCA != translator.DefaultUpstreamCAFile {
		t.Errorf("--upstream-ca-file by default: %q, want %q", c.upstreamCA, translator.DefaultUpstreamCAFile)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(ca))
	if c, err = parseRunFlags([]string{"-f", "x", "--upstream-ca-file", "ca.pem"}); err != nil || c.upstreamCA != ca {
		t.Errorf("--upstream-ca-file ca.pem in %s: %q %v, want %q", filepath.Dir(ca), c.upstreamCA, err, ca)
	}
	if _, err = parseRunFlags([]string{"-f", "x", "--upstream-ca-file", "missing.pem"}); err == nil || !strings.Contains(err.Error(), "--upstream-ca-file") {
		t.Errorf("--upstream-ca-file missing.pem: %v, want an error naming the flag", err)
	}
	// ext_proc's flags, checked as `mcpgate extproc` checks them.
	for _, args := range [][]string{{"--bind-address", "localhost"}, {"--bind-address", ""}, {"--max-body-bytes", "0"}, {"--policy-wait", "-1s"}, {"--mux-max-sse-sessions-per-caller", "-1"}} {
		if _, err := parseRunFlags(append([]string{"-f", "x"}, args...)); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: %v, want an error naming %s", args, err, args[0])
		}
	}
	c, err = parseRunFlags([]string{"-f", "x", "--bind-address", "::", "--max-body-bytes", "100", "--policy-wait", "0", "--redact-keys", "a, b", "--audit-log", "none", "--otlp-endpoint", "http://127.0.0.1:4317", "--mux-max-sse-sessions-per-caller", "7"})
	if err != nil || c.bindAddress != "::" || c.MaxBodyBytes != 100 || c.MuxMaxSSESessionsPerCaller != 7 || c.PolicyWait >= 0 || strings.Join(c.RedactKeys, "|") != "a|b" || c.AuditLog != "none" || c.OTLPEndpoint != "http://127.0.0.1:4317" {
		t.Errorf("%+v %v", c, err)
	}
}

// TestRunRefusesStartupMistakes: a -f path that does not exist or an --envoy-bin that is not an
// executable stops mcpgate run at start (later, a path that goes keeps its last good content).
func TestRunRefusesStartupMistakes(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", filepath.Join(dir, "typo")}, "-f: stat " + filepath.Join(dir, "typo") + ": no such file or directory"},
		{[]string{"-f", dir, "--envoy-bin", filepath.Join(dir, "envoy")}, "--envoy-bin: exec: \"" + filepath.Join(dir, "envoy") + "\": stat"},
		{[]string{"-f", dir, "--envoy-bin", dir}, "--envoy-bin: exec: \"" + dir + "\": is a directory"},
	} {
		cfg, err := parseRunFlags(append(c.args, "--xds-addr", "127.0.0.1:0", "--extproc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--mux-addr", "127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		err = standalone.Serve(context.Background(), cfg.config(), slog.New(slog.DiscardHandler), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestRunPortInUse fails at start, naming the address, when a port is taken.
func TestRunPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg, err := parseRunFlags([]string{"-f", t.TempDir(), "--no-envoy", "--xds-addr", freePort(t), "--extproc-addr", l.Addr().String(), "--admin-addr", freePort(t), "--mux-addr", freePort(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = standalone.Serve(context.Background(), cfg.config(), slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--extproc-addr") || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("standalone.Serve with the ext_proc port taken: %v", err)
	}
	// The xDS port it had opened is free again.
	x, err := net.Listen("tcp", cfg.xdsAddr)
	if err != nil {
		t.Errorf("xDS port still held: %v", err)
	} else {
		x.Close()
	}
}

// TestSecretsNotShown checks that the LLM backend's API key appears neither in `mcpgate
// translate` nor in /debug/xds, while Envoy still receives it over xDS.
func TestSecretsNotShown(t *testing.T) {
	const key = "sk-test-secret-value"
	dir := t.TempDir()
	b, err := os.ReadFile("../../provider/kubernetes/testdata/llm-backend.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "llm.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := translate([]string{"-f", dir}, &out, &errOut); err != nil {
		t.Fatalf("translate: %v\n%s", err, errOut.String())
	}
	if strings.Contains(out.String(), key) || !strings.Contains(out.String(), "<redacted>") {
		t.Errorf("mcpgate translate shows the API key or no <redacted>:\n%s", out.String())
	}

	s := startRun(t, "-f", dir, "--no-envoy")
	code, body, err := get("http://" + s.cfg.admin + "/debug/xds")
	if err != nil || code != 200 {
		t.Fatalf("/debug/xds: %d %v", code, err)
	}
	if strings.Contains(body, key) || !strings.Contains(body, "<redacted>") {
		t.Errorf("/debug/xds shows the API key or no <redacted>:\n%s", body)
	}
	if strings.Contains(s.logs.String(), key) {
		t.Errorf("the logs show the API key")
	}

	// Envoy gets the real value.
	latest := routeConfigs(t, s.cfg.xdsAddr, "llm/gw")
	eventually(t, "the Authorization header in the served route", func() error {
		var values []string
		for _, r := range allRoutes(latest()) {
			for _, h := range r.GetRequestHeadersToAdd() {
				values = append(values, h.GetHeader().GetValue())
			}
		}
		if !slices.Equal(values, []string{"Bearer " + key}) {
			return fmt.Errorf("header values %q", values)
		}
		return nil
	})
}

// TestRunKeepsServedVersionOfARefusedEdit: an edit of a served file that the translator refuses
// (a CEL expression that does not compile, a route to a backend that does not exist) is not
// served: the file keeps its served version, the log says why, and the next good edit is served.
func TestRunKeepsServedVersionOfARefusedEdit(t *testing.T) {
	dir := copyLab(t)
	s := startRun(t, "-f", dir, "--no-envoy")
	debug := func() string { return s.debug(t) }
	served := func(what, text string) {
		t.Helper()
		eventually(t, what, func() error {
			if !strings.Contains(debug(), text) {
				return fmt.Errorf("/debug/xds lacks %s", text)
			}
			return nil
		})
	}
	logged := func(what string, parts ...string) {
		t.Helper()
		s.logged(t, what, parts...)
	}
	edit := func(name, old, new string) {
		t.Helper()
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), old) {
			t.Fatalf("%s lacks %q: %v", name, old, err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const rule = `jwt.org == \"solo.io\"`
	served("the lab's rule", rule)
	version := func() string {
		_, body, _ := get("http://" + s.cfg.admin + "/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "mcpgate_xds_snapshot_version ") {
				return line
			}
		}
		return ""
	}
	first := version()

	edit("rbac.yaml", `'jwt.org == "solo.io"'`, `'jwt.org == '`)
	logged("the refused rule", "not served: ", "rbac.yaml", "EnterpriseAgentgatewayPolicy agentgateway-system/mcp-rbac", "matchExpressions[0]")
	logged("the file kept", "kept: ", "rbac.yaml: serving its last good version: its new content was refused")
	if body := debug(); !strings.Contains(body, rule) {
		t.Errorf("the served rule is gone after a refused edit")
	}
	if v := version(); v != first {
		t.Errorf("a refused edit changed the served snapshot: %s, then %s", first, v)
	}
	// the refused rule is the one problem: the note that rbac.yaml is kept is not another; the
	// log counts it as the metric does
	logged("the served reload counting the refused edit", "configuration served", "problems=1")
	if _, body, _ := get("http://" + s.cfg.admin + "/metrics"); !strings.Contains(body, "mcpgate_config_problems 1\n") {
		t.Errorf("/metrics does not count the refused edit as one problem:\n%s", body)
	}

	// The file no longer loads: its refused rule is gone from the problems, but not resolved.
	edit("rbac.yaml", `'jwt.org == '`, `'jwt.org == '`+"\n  broken: [")
	logged("the refused rule, gone while its file has another problem", "no longer reported, ", "rbac.yaml has another problem: ", "matchExpressions[0]")
	if strings.Contains(s.logs.String(), standalone.ResolvedPrefix) {
		t.Errorf("a refused rule whose file no longer loads is logged resolved:\n%s", s.logs.String())
	}
	edit("rbac.yaml", "\n  broken: [", "")

	edit("mcp.yaml", "- name: mcp-backend", "- name: no-such-backend")
	logged("the refused route", "not served: ", "mcp.yaml", "HTTPRoute agentgateway-system/mcp", "backendRefs[0]")
	prefixes := routes(t, s.cfg.xdsAddr, labGateway)
	eventually(t, "the lab's route", func() error {
		if got := prefixes(); len(got) != 1 || got[0] != "/" {
			return fmt.Errorf("routes %q", got)
		}
		return nil
	})
	if strings.Contains(debug(), "no-such-backend") {
		t.Error("the refused route is served")
	}

	edit("rbac.yaml", `'jwt.org == '`, `'jwt.org == "example.org"'`)
	served("the fixed rule, while mcp.yaml is held back", `jwt.org == \"example.org\"`)
	logged("the edited policy", "changed: ", "rbac.yaml: EnterpriseAgentgatewayPolicy agentgateway-system/mcp-rbac")
	edit("mcp.yaml", "- name: no-such-backend", "- name: mcp-backend")
	logged("the fixed route", standalone.ResolvedPrefix, "mcp.yaml", "HTTPRoute agentgateway-system/mcp", "backendRefs[0]")

	// A Gateway renamed under its routes and policies: what is refused anew is in files that did
	// not change, so the changed file is held back; the rename is served once they follow it.
	edit("gateway.yaml", "  name: agentgateway\n", "  name: renamed\n")
	logged("the route refused by the rename", "not served: ", "mcp.yaml", "HTTPRoute agentgateway-system/mcp")
	logged("the renamed Gateway kept", "kept: ", "gateway.yaml: serving its last good version")
	if body := debug(); strings.Contains(body, "agentgateway-system/renamed") || !strings.Contains(body, labGateway) {
		t.Errorf("a rename that leaves routes and policies behind is served")
	}
	for _, f := range []string{"mcp.yaml", "jwt.yaml", "rbac.yaml"} {
		edit(f, "name: agentgateway\n", "name: renamed\n")
	}
	served("the renamed Gateway", `"agentgateway-system/renamed/8080"`)
	// Only what an edit touched is logged changed: gateway.yaml's GatewayClass is as it was.
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, "changed: ") && strings.Contains(line, "GatewayClass") {
			t.Errorf("an object whose text did not change is logged changed: %s", line)
		}
	}

	// What is accepted but not applied as written is logged as such.
	if err := os.WriteFile(filepath.Join(dir, "several.yaml"), []byte(severalTargets), 0o644); err != nil {
		t.Fatal(err)
	}
	// the log quotes its message: the warning's own quotes come escaped, so its parts between them
	logged("the warning", append([]string{"not applied as written: ", "several.yaml: "}, strings.Split(severalTargetsWarning, `"`)...)...)
	logged("the new object", "added: ", "several.yaml: AgentgatewayBackend tools/several")
	// A file that does not load, then removed: its problem is gone with it, not resolved.
	junk := filepath.Join(dir, "junk.yaml")
	if err := os.WriteFile(junk, []byte("foo: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logged("the file that does not load", "refused: ", "junk.yaml")
	if err := os.Remove(junk); err != nil {
		t.Fatal(err)
	}
	logged("the removed file's problem", "no longer reported, ", "junk.yaml was removed: ")
	if strings.Contains(s.logs.String(), standalone.ResolvedPrefix+junk) {
		t.Errorf("a removed file's problem is logged resolved, as if served:\n%s", s.logs.String())
	}
	// A policy deleted is logged by name.
	if err := os.Remove(filepath.Join(dir, "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	logged("the deleted policy", "removed: ", "rbac.yaml: EnterpriseAgentgatewayPolicy agentgateway-system/mcp-rbac")
	if err := s.shutdown(); err != nil {
		t.Errorf("standalone.Serve: %v", err)
	}
}

// aaaGateway is a Gateway on the lab Gateway's port whose name sorts first: the port goes to it
// (Gateways without a creation time get ports in name order).
const aaaGateway = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: aaa, namespace: aaa}
spec:
  gatewayClassName: enterprise-agentgateway
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
`

// TestRunNewFileTakingAServedPort: a new file whose Gateway would take the port of the served
// Gateway (which would lose its listener, route and policies) is held back whole, and the log
// says which file and why; once it asks for another port it is served. A fresh start with the
// same files (all new) serves them as translate would: nothing is held back.
func TestRunNewFileTakingAServedPort(t *testing.T) {
	dir := copyLab(t)
	s := startRun(t, "-f", dir, "--no-envoy")
	debug := func() string { return s.debug(t) }
	logged := func(what string, parts ...string) {
		t.Helper()
		s.logged(t, what, parts...)
	}
	const labListener, aaaListener = `"agentgateway-system/agentgateway/8080"`, `"aaa/aaa/808`
	if body := debug(); !strings.Contains(body, labListener) {
		t.Fatalf("/debug/xds lacks the lab's listener %s", labListener)
	}
	aaa := filepath.Join(dir, "aaa.yaml")
	if err := os.WriteFile(aaa, []byte(aaaGateway), 0o644); err != nil {
		t.Fatal(err)
	}
	logged("the new file held back", "kept: ", aaa+": nothing of it is served: it is new and its content was refused")
	logged("why", "not served: ", "gateway.yaml: Gateway agentgateway-system/agentgateway: spec.listeners[0]: port 8080 is used by Gateway aaa/aaa")
	if body := debug(); !strings.Contains(body, labListener) || strings.Contains(body, aaaListener) {
		t.Errorf("a new file that takes the served Gateway's port is served")
	}
	prefixes := routes(t, s.cfg.xdsAddr, labGateway)
	eventually(t, "the lab's route while the new file is held back", func() error {
		if got := prefixes(); len(got) != 1 || got[0] != "/" {
			return fmt.Errorf("routes %q", got)
		}
		return nil
	})

	if err := os.WriteFile(aaa, []byte(strings.Replace(aaaGateway, "8080", "8081", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new file on its own port", func() error {
		if body := debug(); !strings.Contains(body, `"aaa/aaa/8081"`) || !strings.Contains(body, labListener) {
			return fmt.Errorf("/debug/xds lacks aaa/aaa/8081 or the lab's listener")
		}
		return nil
	})
	if err := s.shutdown(); err != nil {
		t.Errorf("standalone.Serve: %v", err)
	}

	// a fresh start: every file is new, none is held back
	if err := os.WriteFile(aaa, []byte(aaaGateway), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := startRun(t, "-f", dir, "--no-envoy")
	if _, body, err := get("http://" + fresh.cfg.admin + "/debug/xds"); err != nil || !strings.Contains(body, `"aaa/aaa/8080"`) {
		t.Errorf("a fresh start does not serve aaa.yaml's Gateway: %v", err)
	}
	if logs := fresh.logs.String(); strings.Contains(logs, "not served: ") || !strings.Contains(logs, "refused: "+filepath.Join(dir, "gateway.yaml")) {
		t.Errorf("a fresh start held something back, or did not refuse the lab's Gateway:\n%s", logs)
	}
}

// all reports whether s contains every part.
func all(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestRunEnvoyStats: `mcpgate run`'s /metrics serves the statistics of every Envoy it runs, each
// sample labelled with its Gateway, one mcpgate_envoy_stats_up per Envoy, and follows the
// Gateways: a Gateway that goes takes its Envoy's statistics with it.
func TestRunEnvoyStats(t *testing.T) {
	listener, second := freePort(t), freePort(t)
	dir := labOnPort(t, listener)
	_, port, _ := net.SplitHostPort(second)
	secondGateway := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: second, namespace: agentgateway-system}
spec:
  gatewayClassName: enterprise-agentgateway
  listeners: [{name: http, port: ` + port + `, protocol: HTTP}]
`
	if err := os.WriteFile(filepath.Join(dir, "second.yaml"), []byte(secondGateway), 0o644); err != nil {
		t.Fatal(err)
	}
	const secondName = "agentgateway-system/second"
	s := startRun(t, "-f", dir, "--envoy-bin", envoyBin(t))
	metrics := func() (map[string]*dto.MetricFamily, error) {
		resp, err := http.Get("http://" + s.cfg.admin + "/metrics")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("/metrics: %s", resp.Status)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		return p.TextToMetricFamilies(resp.Body)
	}
	// sum adds the values of family name's samples of Gateway gw that keep says (nil: all).
	sum := func(mfs map[string]*dto.MetricFamily, name, gw string, keep func(map[string]string) bool) (float64, int) {
		var v float64
		n := 0
		for _, m := range mfs[name].GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["gateway"] == gw && (keep == nil || keep(labels)) {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				n++
			}
		}
		return v, n
	}
	gatewayListener := func(l map[string]string) bool { return l["envoy_http_conn_manager_prefix"] != "admin" }

	eventually(t, "a request through "+labGateway+"'s Envoy counted in /metrics", func() error {
		if resp, err := http.Get("http://" + listener + "/"); err == nil {
			resp.Body.Close()
		}
		mfs, err := metrics()
		if err != nil {
			return err
		}
		if v, _ := sum(mfs, "mcpgate_envoy_stats_up", labGateway, nil); v != 1 {
			return fmt.Errorf("mcpgate_envoy_stats_up{gateway=%q} %v", labGateway, v)
		}
		if v, _ := sum(mfs, "mcpgate_envoy_stats_up", secondName, nil); v != 1 {
			return fmt.Errorf("mcpgate_envoy_stats_up{gateway=%q} %v", secondName, v)
		}
		if v, _ := sum(mfs, "envoy_http_downstream_rq_total", labGateway, gatewayListener); v < 1 {
			return fmt.Errorf("envoy_http_downstream_rq_total{gateway=%q} of the Gateway's listener: %v", labGateway, v)
		}
		if _, n := sum(mfs, "envoy_cluster_upstream_rq_total", secondName, nil); n == 0 {
			return fmt.Errorf("no envoy_cluster_upstream_rq_total{gateway=%q}", secondName)
		}
		if v, _ := sum(mfs, "mcpgate_config_problems", "", nil); v != 0 {
			return fmt.Errorf("mcpgate_config_problems %v", v)
		}
		return nil
	})

	// The second Gateway goes: its Envoy stops and its statistics leave /metrics.
	if err := os.Remove(filepath.Join(dir, "second.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/metrics without "+secondName+"'s Envoy", func() error {
		mfs, err := metrics()
		if err != nil {
			return err
		}
		for name, mf := range mfs {
			if _, n := sum(map[string]*dto.MetricFamily{name: mf}, name, secondName, nil); n > 0 {
				return fmt.Errorf("%s has %d series of gateway %q", name, n, secondName)
			}
		}
		if v, _ := sum(mfs, "mcpgate_envoy_stats_up", labGateway, nil); v != 1 {
			return fmt.Errorf("mcpgate_envoy_stats_up{gateway=%q} %v", labGateway, v)
		}
		return nil
	})
	if err := s.shutdown(); err != nil {
		t.Errorf("standalone.Serve: %v", err)
	}
}

// TestRunNoEnvoyStats: without Envoys to run (--no-envoy), /metrics serves mcpgate's metrics only.
func TestRunNoEnvoyStats(t *testing.T) {
	s := startRun(t, "-f", copyLab(t), "--no-envoy")
	_, body, err := get("http://" + s.cfg.admin + "/metrics")
	if err != nil || !strings.Contains(body, "mcpgate_config_problems") || strings.Contains(body, "envoy_") {
		t.Errorf("/metrics with --no-envoy: want mcpgate's metrics, no envoy_* nor mcpgate_envoy_stats_up: %v\n%s", err, body)
	}
}
