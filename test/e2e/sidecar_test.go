package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"github.com/mcpgate/mcpgate/internal/drain"
)

// labGateway is the lab's Gateway, the xDS node group of its data plane.
const labGateway = "agentgateway-system/agentgateway"

// TestSidecarDeploymentOutages runs the deployment of docs/kubernetes.md outside a cluster, each part a
// process of its own: the control plane (`mcpgate run --no-envoy`), ext_proc as the data plane's
// sidecar (`mcpgate extproc` on a Unix socket, policies over ADS), and the data plane started with
// `mcpgate bootstrap`'s bootstrap. It serves the lab with its JWT policy and CEL rule, verbatim.
// The behaviour contracts (ARCHITECTURE.md): while the control plane is down, the data plane and
// ext_proc keep serving their last configuration, refusals included, and once it is back both
// take what changed meanwhile, without being restarted; while ext_proc is down, the data plane
// answers 5xx, never passing a request through.
func TestSidecarDeploymentOutages(t *testing.T) {
	free, err := freePorts(12)
	if err != nil {
		t.Fatal(err)
	}
	p := env.ports // the upstream servers are the suite's
	p.gateway, p.everythingSSE, p.everythingHTTP, p.conformance = free[0], free[1], free[2], free[3]
	p.xds, p.extproc, p.admin, p.envoyAdmin = free[4], free[5], free[6], free[7]
	latePort, sidecarAdmin := free[8], addr(free[9])
	p.mux, p.conformanceSSE = free[10], free[11]

	root := filepath.Join(env.out, "restart")
	lab, err := newLabDir(root, env.lab.example, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.base(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{fileJWT, fileRBAC} {
		if err := lab.copyExample(f); err != nil {
			t.Fatal(err)
		}
	}

	startControlPlane := func() *proc {
		t.Helper()
		cp, err := env.startProc(procSpec{name: "restart-mcpgate", args: []string{env.bin.mcpgate, "run",
			"-f", lab.dir, "--no-envoy",
			"--xds-addr", addr(p.xds), "--extproc-addr", addr(p.extproc), "--admin-addr", addr(p.admin),
			"--mux-addr", addr(p.mux),
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cp.stop)
		if err := waitReady(cp, "http://"+addr(p.admin)+"/readyz", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		return cp
	}
	cp := startControlPlane()

	// The sidecar and the data plane, as the Deployment of docs/kubernetes.md runs them.
	sock := filepath.Join(t.TempDir(), "extproc.sock")
	// The mux on a socket, as in the pod: the lab's Streamable HTTP clients of its SSE target are
	// bridged by the sidecar's mux, which reaches the target back through the upstream socket (the
	// test's own: the default, in the temporary folder, is every lab Gateway's).
	muxSock, upstreamSock := filepath.Join(filepath.Dir(sock), "mux.sock"), filepath.Join(filepath.Dir(sock), "upstream.sock")
	boot, err := exec.Command(env.bin.mcpgate, "bootstrap", "--gateway", labGateway, "--xds-addr", addr(p.xds),
		"--extproc-addr", "unix://"+sock, "--envoy-admin-addr", addr(p.envoyAdmin),
		"--mux-addr", "unix://"+muxSock, "--mux-upstream", "unix://"+upstreamSock).Output()
	if err != nil {
		t.Fatalf("mcpgate bootstrap: %v", err)
	}
	bootPath := filepath.Join(root, "bootstrap.yaml")
	if err := os.WriteFile(bootPath, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	// As in the pod: the Gateway's session key, whose token the preStop hook's /drain carries.
	sessionKey := bytes.Repeat([]byte("k"), 32)
	keyFile := filepath.Join(root, "session.key")
	if err := os.WriteFile(keyFile, sessionKey, 0o600); err != nil {
		t.Fatal(err)
	}
	startSidecar := func() *proc {
		t.Helper()
		sc, err := env.startProc(procSpec{name: "restart-extproc", splitStdout: true, args: []string{env.bin.mcpgate, "extproc",
			"--listen", "unix://" + sock, "--xds-addr", addr(p.xds), "--gateway", labGateway, "--admin-addr", sidecarAdmin,
			"--mux-listen", "unix://" + muxSock, "--mux-upstream", "unix://" + upstreamSock,
			// as in the pod: /metrics adds the data plane's statistics from its admin listener
			"--envoy-stats-url", "http://" + addr(p.envoyAdmin) + "/stats/prometheus",
			"--session-key-file", keyFile, "--drain-envoy-admin", addr(p.envoyAdmin), "--drain-min", "200ms", "--drain-max", "10s",
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sc.stop)
		if err := waitReady(sc, "http://"+sidecarAdmin+"/readyz", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		return sc
	}
	sidecar := startSidecar()
	// The data plane is not started yet: the sidecar's /metrics serves its own, and says that
	// Envoy's statistics are missing.
	if mfs := sidecarMetrics(t, sidecarAdmin); mfs["mcpgate_envoy_stats_up"] == nil || metricSum(mfs, "mcpgate_envoy_stats_up", nil) != 0 ||
		mfs["mcpgate_extproc_streams_active"] == nil || mfs["envoy_http_downstream_rq_total"] != nil {
		t.Errorf("the sidecar's /metrics before the data plane runs: want mcpgate's metrics, mcpgate_envoy_stats_up 0 and no envoy_*, got %v", names(mfs))
	}
	dataPlane, err := env.startProc(procSpec{name: "restart-dataplane", splitStdout: true, args: []string{env.bin.dataPlane,
		"-c", bootPath, "--log-level", "info", "--disable-hot-restart", "--file-flush-interval-msec", accessLogFlushMillis,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dataPlane.stop)
	if err := waitReady(dataPlane, "http://"+addr(p.envoyAdmin)+"/ready", 90*time.Second); err != nil {
		t.Fatal(err)
	}

	mcpURL := "http://" + addr(p.gateway) + "/mcp"
	fetch := func() error { return fetchWithToken(mcpURL, env.devToken) }
	// initializeAnswered checks that an initialize POST with token (none: "") gets status.
	initializeAnswered := func(token string, status int) error {
		a, err := env.request(http.MethodPost, mcpURL, token, initializeBody)
		if err != nil {
			return err
		}
		if a.status != status {
			return fmt.Errorf("initialize with token %t: %d %s, want %d", token != "", a.status, a.body, status)
		}
		return nil
	}
	eventually(t, "the lab's token calls fetch through the split deployment", fetch)
	if err := initializeAnswered("", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	// The sidecar's /metrics, which Prometheus scrapes in Kubernetes, holds the data plane's
	// statistics too: the requests of the Gateway's listener (not the admin's), the 401 among them.
	gatewayRequests := func(labels map[string]string) bool { return labels["envoy_http_conn_manager_prefix"] != "admin" }
	mfs := sidecarMetrics(t, sidecarAdmin)
	if up, rq := metricSum(mfs, "mcpgate_envoy_stats_up", nil), metricSum(mfs, "envoy_http_downstream_rq_total", gatewayRequests); up != 1 || rq < 2 {
		t.Errorf("the sidecar's /metrics: mcpgate_envoy_stats_up %v and %v requests in envoy_http_downstream_rq_total, want 1 and at least 2 (fetch, initialize): %v", up, rq, names(mfs))
	}
	if n := metricSum(mfs, "envoy_http_downstream_rq_xx", func(l map[string]string) bool {
		return gatewayRequests(l) && l["envoy_response_code_class"] == "4"
	}); n < 1 {
		t.Errorf("the sidecar's /metrics: %v 4xx answers in envoy_http_downstream_rq_xx, want the 401 at least", n)
	}
	if mfs["mcpgate_mcp_requests_total"] == nil {
		t.Errorf("the sidecar's /metrics has no mcpgate_mcp_requests_total beside Envoy's: %v", names(mfs))
	}

	// The control plane stops: what was configured keeps working, refusals included.
	cp.stop()
	for i := range 3 {
		if err := fetch(); err != nil {
			t.Fatalf("call %d with the control plane down: %v", i, err)
		}
		if err := initializeAnswered("", http.StatusUnauthorized); err != nil {
			t.Fatalf("call %d with the control plane down: %v", i, err)
		}
	}

	// Meanwhile the files change: the CEL rule now wants another org (the lab's token is refused
	// by ext_proc) and the Gateway gets a listener (Envoy has to open it).
	rbac, err := lab.editExample(fileRBAC, func(obj map[string]any) error {
		return setCEL(obj, `jwt.org == "another-org"`)
	})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := lab.gateway()
	if err != nil {
		t.Fatal(err)
	}
	if gw, err = withListener(gw, "late", latePort); err != nil {
		t.Fatal(err)
	}
	if err := lab.put(fileRBAC, rbac); err != nil {
		t.Fatal(err)
	}
	if err := lab.put(fileGateway, gw); err != nil {
		t.Fatal(err)
	}
	if err := fetch(); err != nil {
		t.Fatalf("the data plane changed with no control plane: %v", err)
	}

	// The control plane is back on the same address: both resync without a restart.
	startControlPlane()
	eventually(t, "ext_proc applies the new CEL rule (403 for the lab's token)", func() error {
		return initializeAnswered(env.devToken, http.StatusForbidden)
	})
	eventually(t, "the data plane opens the new listener", func() error {
		resp, err := http.Get("http://" + addr(latePort) + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	for _, pr := range []*proc{sidecar, dataPlane} {
		if !pr.running() {
			t.Fatalf("%s", pr.describe())
		}
	}

	// ext_proc stops (ARCHITECTURE.md, "ext_proc down"): the data plane fails closed, with or
	// without a token, and serves again once the sidecar is back on its socket.
	sidecar.stop()
	for _, token := range []string{"", env.devToken} {
		a, err := env.request(http.MethodPost, mcpURL, token, initializeBody)
		if err != nil {
			t.Fatal(err)
		}
		if a.status < 500 {
			t.Errorf("initialize with token %t while ext_proc is down: %d %s, want a 5xx", token != "", a.status, a.body)
		}
	}
	startSidecar()
	eventually(t, "the data plane uses the restarted sidecar", func() error {
		return initializeAnswered(env.devToken, http.StatusForbidden)
	})

	// The pod terminates: Envoy's preStop hook, GET /drain on the sidecar's admin port with the
	// session key's token (docs/kubernetes.md), has the sidecar drain the data plane and answers
	// once its connections are gone; requests still served meanwhile are asked to close their
	// connection. Without the token, nothing is drained.
	preStop := func(token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "http://"+sidecarAdmin+drain.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set(drain.TokenHeader, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := preStop(""); code != http.StatusForbidden {
		t.Errorf("/drain without the token: %d, want 403", code)
	}
	if err := initializeAnswered(env.devToken, http.StatusForbidden); err != nil {
		t.Errorf("after a refused /drain: %v", err)
	}
	// (Envoy closes no idle connection when it drains: the test's own go first; the sidecar's
	// mux closes its idle ones to Envoy's upstream listener when the drain starts)
	http.DefaultClient.CloseIdleConnections()
	if code, body := preStop(drain.Token(sessionKey)); code != http.StatusOK || !strings.Contains(body, "drained: 0 downstream connections left") {
		t.Errorf("the preStop hook's /drain: %d %q, want 200 and no connection left", code, body)
	}
	a, err := env.request(http.MethodPost, mcpURL, env.devToken, initializeBody)
	if err != nil || a.status != http.StatusForbidden || !a.closes {
		t.Errorf("a request after the drain: %+v, %v; want 403 (the CEL rule) with Connection: close", a, err)
	}
}

// fetchWithToken calls the lab's fetch tool over Streamable HTTP with a bearer token and checks
// that the page came back.
func fetchWithToken(url, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e-restart", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: bearerClient(token), MaxRetries: -1}, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "fetch", Arguments: map[string]any{"url": env.pageURL}})
	if err != nil {
		return fmt.Errorf("tools/call fetch: %w", err)
	}
	if res.IsError || len(res.Content) != 1 {
		return fmt.Errorf("tools/call fetch = %+v", res)
	}
	if text, _ := res.Content[0].(*mcp.TextContent); text == nil || !strings.Contains(text.Text, pageMarker) {
		return fmt.Errorf("tools/call fetch = %+v, want the page", res.Content[0])
	}
	return nil
}

// setCEL replaces the match expressions of a policy's traffic authorization by expr.
func setCEL(obj map[string]any, expr string) error {
	authz, _ := obj["spec"].(map[string]any)["traffic"].(map[string]any)["authorization"].(map[string]any)
	if authz == nil {
		return fmt.Errorf("%v has no spec.traffic.authorization", obj["metadata"])
	}
	authz["policy"] = map[string]any{"matchExpressions": []any{expr}}
	return nil
}

// withListener adds an HTTP listener to the Gateway of a multi-document YAML file.
func withListener(file []byte, name string, port int) ([]byte, error) {
	docs := bytes.Split(file, []byte("---\n"))
	for i, doc := range docs {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, err
		}
		if obj["kind"] != "Gateway" {
			continue
		}
		spec := obj["spec"].(map[string]any)
		spec["listeners"] = append(spec["listeners"].([]any), map[string]any{"name": name, "port": port, "protocol": "HTTP"})
		out, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		docs[i] = out
		return bytes.Join(docs, []byte("---\n")), nil
	}
	return nil, fmt.Errorf("no Gateway in %q", file)
}

// sidecarMetrics scrapes the /metrics of the sidecar's admin address as Prometheus does.
func sidecarMetrics(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the sidecar's /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the sidecar's /metrics is not a valid exposition: %v", err)
	}
	return mfs
}

// metricSum adds the counter and gauge values of family name whose labels keep says (nil: all).
func metricSum(mfs map[string]*dto.MetricFamily, name string, keep func(map[string]string) bool) float64 {
	var sum float64
	for _, m := range mfs[name].GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if keep == nil || keep(labels) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// names lists the families of a scrape, for a failure message.
func names(mfs map[string]*dto.MetricFamily) []string {
	out := make([]string, 0, len(mfs))
	for n := range mfs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
