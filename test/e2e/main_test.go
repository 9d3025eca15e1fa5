package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/internal/pki"
)

// env is the running suite, set once by TestMain before any test runs and read by every test.
var env *suite

// suite holds what TestMain started: one set of processes for the whole package.
type suite struct {
	out       string // test/e2e/out: logs of every process, the watched folder, results
	bin       binaries
	tools     tools
	ports     ports
	lab       *labDir
	inspector *inspector
	inspCfg   string // the lab's mcp-inspector-config.json, ports edited, with the suite's servers
	page      *httptest.Server
	pageURL   string // what the lab fetches instead of https://httpbin.org/get
	issuer    *testIssuer
	// upstreamCA is the CA of the suite's TLS MCP servers: `mcpgate run --upstream-ca-file` names
	// its certificate (upstreamCAFile), so the data plane trusts it and no other.
	upstreamCA     *pki.CA
	upstreamCAFile string
	devToken       string // the lab's DEV_TOKEN
	mcpgate        *proc
	// sessions opens the session ids clients hold (sealed by ext_proc with the key of
	// `mcpgate run --session-key-file`) to the servers' own.
	sessions *bind.Binder

	mu      sync.Mutex // guards procs and stopped: a signal can stop the suite while it starts
	procs   []*proc
	stopped bool
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	unlock, err := lockOut()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer unlock()
	s := &suite{}
	defer s.stop()
	// Ctrl-C (go test gets SIGINT with the terminal's process group) or a SIGTERM would end the
	// test binary without its deferred calls, leaving the servers, each in its own process group,
	// running: stop them first.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: stopping the suite's processes\n", sig)
		s.stop()
		unlock()
		os.Exit(1)
	}()
	if err := s.start(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setting up the suite failed: %v\n", err)
		s.dumpLogs()
		return 1
	}
	env = s
	code := m.Run()
	if code != 0 {
		s.dumpLogs()
	}
	return code
}

// pageMarker is in the local page's body, so a fetch result can be recognized.
const pageMarker = "mcpgate-e2e-local-page"

func (s *suite) start() error {
	var err error
	if s.out, err = filepath.Abs("out"); err != nil {
		return err
	}
	if err := os.RemoveAll(s.out); err != nil {
		return fmt.Errorf("clean %s: %w", s.out, err)
	}
	if err := os.MkdirAll(filepath.Join(s.out, "bin"), 0o755); err != nil {
		return err
	}
	cache, err := cacheDir()
	if err != nil {
		return err
	}
	if s.tools, err = findTools(cache); err != nil {
		return err
	}
	if s.bin, err = buildBinaries(filepath.Join(s.out, "bin"), filepath.Join(s.out, "build.log")); err != nil {
		return err
	}
	if s.ports, err = pickPorts(); err != nil {
		return err
	}
	if s.issuer, err = newTestIssuer(); err != nil {
		return err
	}
	if s.upstreamCA, err = pki.NewCA(time.Now()); err != nil {
		return err
	}
	s.upstreamCAFile = filepath.Join(s.out, "upstream-ca.pem")
	if err := os.WriteFile(s.upstreamCAFile, s.upstreamCA.CertPEM, 0o644); err != nil {
		return err
	}
	token, err := os.ReadFile("../../examples/mcp-connectivity/dev-token.txt")
	if err != nil {
		return fmt.Errorf("the lab's DEV_TOKEN: %w", err)
	}
	s.devToken = strings.TrimSpace(string(token))
	if s.inspector, err = newInspector(s.tools.inspector, s.out, filepath.Join(s.out, "inspector.log")); err != nil {
		return err
	}

	// The page the fetch tool reads, in place of https://httpbin.org/get (no internet here).
	s.page = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"url\": %q, \"user-agent\": %q, \"marker\": %q}\n", "http://"+r.Host+r.URL.String(), r.UserAgent(), pageMarker)
	}))
	s.pageURL = s.page.URL + "/get"

	if err := s.startServers(); err != nil {
		return err
	}
	if s.lab, err = newLabDir(s.out, "../../examples/mcp-connectivity", s.ports); err != nil {
		return err
	}
	if err := s.lab.base(); err != nil {
		return err
	}
	if err := s.writeInspectorConfig(); err != nil {
		return err
	}
	return s.startGateway()
}

// startServers starts the MCP servers the gateway routes to.
func (s *suite) startServers() error {
	everything := func(name string, port int, transport string) procSpec {
		return procSpec{
			name: name,
			args: []string{"node", "-r", s.tools.preload, s.tools.everything, transport},
			env:  []string{"PORT=" + strconv.Itoa(port)},
			dir:  s.out,
		}
	}
	servers := []struct {
		spec procSpec
		port int
	}{
		{procSpec{name: "fetchserver", args: []string{s.bin.fetchserver, "-addr", addr(s.ports.fetch)}}, s.ports.fetch},
		{everything("everything-sse", s.ports.everythingSSEUp, "sse"), s.ports.everythingSSEUp},
		{everything("everything-http", s.ports.everythingHTTPUp, "streamableHttp"), s.ports.everythingHTTPUp},
		{procSpec{name: "conformance-server", args: []string{s.bin.conformance, "-http", addr(s.ports.conformanceUp), "-stateless=false"}}, s.ports.conformanceUp},
		// The same server over legacy HTTP+SSE: the adapter starts it in stdio mode per session.
		{procSpec{name: "conformance-sse", args: []string{s.bin.sseadapter, "-addr", addr(s.ports.conformanceSSEUp), "--", s.bin.conformance}}, s.ports.conformanceSSEUp},
	}
	for _, srv := range servers {
		p, err := s.startProc(srv.spec)
		if err != nil {
			return err
		}
		if err := waitTCP(p, addr(srv.port), 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// accessLogFlushMillis is how often the data plane writes its buffered access log. Envoy's default,
// 10 s (--file-flush-interval-msec), would hold back the lines the tests read; the double writes
// each line at once and ignores the flag.
const accessLogFlushMillis = "100"

// serverSession returns the server's session id of the one a client without a token holds: the
// gateway seals each session id for the caller that opened it (extproc/bind); an id that is not
// such a seal is an error.
func (s *suite) serverSession(client string) (string, error) {
	id, ok := s.sessions.Open(client, bind.Caller{})
	if !ok {
		return "", fmt.Errorf("the client's session id %q is not sealed by the gateway for a caller without a token", client)
	}
	return id, nil
}

// startGateway starts `mcpgate run` on the watched folder; it starts the data plane (--envoy-bin) with
// the bootstrap it writes. Its stdout holds the data plane's access log and ext_proc's audit lines.
// startGateway waits until the data plane's admin says /ready (Envoy's: LIVE once its first
// configuration is in) and the Gateway's listeners accept connections.
func (s *suite) startGateway() error {
	key := make([]byte, bind.KeySize)
	rand.Read(key)
	keyFile := filepath.Join(s.out, "session-key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return err
	}
	var err error
	if s.sessions, err = bind.New(key); err != nil {
		return err
	}
	s.mcpgate, err = s.startProc(procSpec{name: "mcpgate", splitStdout: true, args: []string{s.bin.mcpgate, "run",
		"-f", s.lab.dir,
		"--session-key-file", keyFile,
		"--upstream-ca-file", s.upstreamCAFile,
		"--xds-addr", addr(s.ports.xds),
		"--extproc-addr", addr(s.ports.extproc),
		"--admin-addr", addr(s.ports.admin),
		"--mux-addr", addr(s.ports.mux),
		"--envoy-bin", s.bin.dataPlane,
		"--envoy-admin-addr", addr(s.ports.envoyAdmin),
		"--envoy-arg", "--file-flush-interval-msec", "--envoy-arg", accessLogFlushMillis,
	}})
	if err != nil {
		return err
	}
	if err := waitReady(s.mcpgate, "http://"+addr(s.ports.envoyAdmin)+"/ready", 90*time.Second); err != nil {
		return fmt.Errorf("the data plane did not become ready: %w", err)
	}
	for _, port := range []int{s.ports.gateway, s.ports.everythingSSE, s.ports.everythingHTTP, s.ports.conformance, s.ports.conformanceSSE} {
		if err := waitTCP(s.mcpgate, addr(port), 30*time.Second); err != nil {
			return fmt.Errorf("the Gateway's listeners did not come up: %w", err)
		}
	}
	return nil
}

// stdoutLog is mcpgate's stdout: the data plane's access log and ext_proc's audit lines.
func (s *suite) stdoutLog() string { return s.mcpgate.logs[1] }

func (s *suite) startProc(spec procSpec) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, fmt.Errorf("%s: the suite is stopping", spec.name)
	}
	p, err := startProc(s.out, spec)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

// writeInspectorConfig writes the lab's mcp-inspector-config.json with the suite's gateway port and
// entries for server-everything through the gateway.
func (s *suite) writeInspectorConfig() error {
	example, err := os.ReadFile(filepath.Join(s.lab.example, "mcp-inspector-config.json"))
	if err != nil {
		return err
	}
	var cfg struct {
		Servers map[string]map[string]string `json:"mcpServers"`
	}
	if err := json.Unmarshal(example, &cfg); err != nil {
		return fmt.Errorf("mcp-inspector-config.json: %w", err)
	}
	for name, srv := range cfg.Servers {
		u := strings.Replace(srv["url"], "127.0.0.1:8080", addr(s.ports.gateway), 1)
		if u == srv["url"] {
			return fmt.Errorf("mcp-inspector-config.json: server %s: url %s is not on 127.0.0.1:8080", name, u)
		}
		srv["url"] = u
	}
	cfg.Servers["everything-sse"] = map[string]string{"type": "sse", "url": "http://" + addr(s.ports.everythingSSE) + "/sse"}
	cfg.Servers["everything-http"] = map[string]string{"type": "streamable-http", "url": "http://" + addr(s.ports.everythingHTTP) + "/mcp"}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	s.inspCfg = filepath.Join(s.out, "mcp-inspector-config.json")
	return os.WriteFile(s.inspCfg, data, 0o644)
}

// stop ends every process the suite started, the last started first; it may run twice (a signal
// during the deferred stop).
func (s *suite) stop() {
	s.mu.Lock()
	s.stopped = true
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	if s.page != nil {
		s.page.Close()
	}
}

// dumpLogs prints the end of every log under out/, for failures.
func (s *suite) dumpLogs() {
	if s.out == "" {
		return
	}
	files, _ := filepath.Glob(filepath.Join(s.out, "*.log"))
	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintf(os.Stderr, "\n===== %s =====\n%s\n", f, tail(f, 80))
	}
}

// lockOut takes an exclusive lock for this checkout's out/ folder, waiting while another run of the
// suite in the same checkout holds it (each run empties out/ first).
func lockOut() (unlock func(), err error) {
	dir, err := filepath.Abs("out")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("mcpgate-e2e-%x.lock", sha256.Sum256([]byte(dir))))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		fmt.Fprintf(os.Stderr, "e2e: another run of the suite uses %s; waiting for it to finish\n", dir)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	}
	return func() { f.Close() }, nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// portOf is the port a test server listens on, for the testdata files' placeholders.
func portOf(srv *httptest.Server) string {
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}
