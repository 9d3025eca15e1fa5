// Package drain drains a data plane pod's Envoy before it stops. Kubernetes runs Envoy's preStop
// hook, an HTTP GET of the ext_proc sidecar's /drain (Handler), before it sends Envoy SIGTERM,
// on which Envoy closes every connection at once. The handler asks Envoy to drain its listeners
// (admin POST /drain_listeners?graceful: with --drain-strategy immediate each response asks its
// client to close the connection, and new connections are still taken until --drain-time-s),
// gives the Service's endpoints time to drop the pod, then waits until Envoy's downstream
// connections are closed (its server.total_connections statistic) or a bound, and answers:
// requests in flight finish, clients move to other pods. Envoy closes no idle connection when it
// drains (envoyproxy/envoy#42305): a kept-alive connection closes after its next response, which
// asks its client to close, or at the bound. A stream that outlives the bound (an MCP GET stream)
// is cut by the SIGTERM, and its client reconnects elsewhere. A drain that no termination
// follows (the token is readable with the pod spec) would leave Envoy's listeners stopped: with
// Config.RestartAfter the sidecar then tells Envoy to quit, and the kubelet starts it again.
package drain

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Path is where the ext_proc sidecar's admin endpoint serves the Handler.
const Path = "/drain"

// TokenHeader carries the Token: the preStop hook sends it, so that nothing else that reaches
// the admin port (which serves metrics to the cluster) can drain the pod.
const TokenHeader = "X-Mcpgate-Drain-Token"

// Token returns the drain token of a data plane whose ext_proc sidecars seal sessions with
// sessionKey: the controller, which made the key, writes it into the preStop hook, and the
// sidecar, which reads the key, checks it. The pod spec shows the token, never the key.
func Token(sessionKey []byte) string {
	m := hmac.New(sha256.New, sessionKey)
	m.Write([]byte("mcpgate data plane drain"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Defaults of Config.
const (
	// DefaultMin is how long the drain lasts at least: kube-proxy and load balancers stop
	// sending new connections to a terminating pod within a few seconds.
	DefaultMin = 5 * time.Second
	// DefaultMax bounds the wait for the connections to close (the pod's
	// terminationGracePeriodSeconds must be longer).
	DefaultMax = 30 * time.Second
)

// Config says which Envoy to drain and how.
type Config struct {
	// EnvoyAdmin is Envoy's admin address, HOST:PORT (in the pod: bootstrap.DefaultAdminAddr).
	EnvoyAdmin string
	// Token is the token a request must carry in TokenHeader (Token of the session key).
	Token string
	// Min and Max bound the drain (defaults DefaultMin, DefaultMax); Poll is how often Envoy's
	// connections are read (default 1 s).
	Min, Max, Poll time.Duration
	// OnDrain, when set, runs before each read of Envoy's connections during a drain: the
	// sidecar closes its own idle connections to Envoy (the mux's), which Envoy would count until
	// they close.
	OnDrain func()
	// RestartAfter, when set, is how long after a drain began an Envoy still up is told to quit
	// (admin POST /quitquitquit): longer than the pod's termination grace period, so that only
	// a drain no termination followed gets there, and than Envoy's --drain-time-s.
	RestartAfter time.Duration
	// Log reports the drain; nil discards.
	Log *slog.Logger
}

// Handler returns the /drain handler: a request with the token starts a drain (one at a time:
// a request during one waits for it; one after it starts another, since Envoy may have been
// restarted meanwhile) and is answered 200 when it ends, saying how many connections were left
// (or that they are unknown: Envoy's admin did not answer); one without is 403. The drain goes
// on if the request goes away.
func Handler(cfg Config) http.Handler {
	if cfg.Min <= 0 {
		cfg.Min = DefaultMin
	}
	if cfg.Max < cfg.Min {
		cfg.Max = max(DefaultMax, cfg.Min)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &drainer{cfg: cfg, client: &http.Client{Timeout: 5 * time.Second}}
}

type drainer struct {
	cfg    Config
	client *http.Client
	mu     sync.Mutex
	cur    *run // the latest drain
}

// run is one drain.
type run struct {
	done chan struct{}
	left int64 // connections open when the drain ended (-1: unknown); set before done closes
}

// ended reports whether r is over.
func (r *run) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (d *drainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "use GET (a preStop httpGet hook) or POST", http.StatusMethodNotAllowed)
		return
	}
	got := r.Header.Get(TokenHeader)
	if d.cfg.Token == "" || !hmac.Equal([]byte(got), []byte(d.cfg.Token)) {
		http.Error(w, "drain: missing or wrong "+TokenHeader, http.StatusForbidden)
		return
	}
	d.mu.Lock()
	if d.cur == nil || d.cur.ended() {
		d.cur = &run{done: make(chan struct{}), left: -1}
		go d.drain(d.cur)
	}
	cur := d.cur
	d.mu.Unlock()
	select {
	case <-cur.done:
		if cur.left < 0 {
			fmt.Fprintln(w, "drained: Envoy's downstream connections unknown")
			return
		}
		fmt.Fprintf(w, "drained: %d downstream connections left\n", cur.left)
	case <-r.Context().Done():
	}
}

// drain drains Envoy and closes r.done when it is over. With Config.RestartAfter, an Envoy that
// is still up that long after the drain began (its pod did not terminate) is told to quit.
func (d *drainer) drain(r *run) {
	start := time.Now()
	log := d.cfg.Log.With("envoy_admin", d.cfg.EnvoyAdmin)
	defer func() {
		close(r.done)
		if d.cfg.RestartAfter > 0 {
			time.AfterFunc(d.cfg.RestartAfter-time.Since(start), func() { d.restart(r) })
		}
	}()
	if err := d.post("/drain_listeners?graceful"); err != nil {
		// Envoy may be gone already: the minimum still lets the endpoints drop the pod, and an
		// Envoy that refuses connections has none to wait for.
		log.Warn("drain: Envoy did not start draining its listeners", "error", err)
		if errors.Is(err, syscall.ECONNREFUSED) {
			time.Sleep(d.cfg.Min)
			log.Info("drain: over (Envoy's admin refuses connections)", "took", time.Since(start).Round(time.Millisecond))
			return
		}
	} else {
		log.Info("drain: Envoy drains its listeners", "min", d.cfg.Min, "max", d.cfg.Max)
	}
	time.Sleep(d.cfg.Min)
	for {
		if d.cfg.OnDrain != nil {
			d.cfg.OnDrain() // connections idle since the last poll (their answers began before the drain)
		}
		n, err := d.connections()
		if err == nil {
			r.left = n
		}
		if (err == nil && n == 0) || time.Since(start)+d.cfg.Poll > d.cfg.Max {
			break
		}
		time.Sleep(d.cfg.Poll)
	}
	log.Info("drain: over", "downstream_connections_left", r.left, "took", time.Since(start).Round(time.Millisecond))
}

// restart tells Envoy to quit when r is still the latest drain: a drain its pod's termination
// did not follow (the token is readable with the pod spec) would otherwise leave Envoy's
// listeners stopped for good; the kubelet starts Envoy again.
func (d *drainer) restart(r *run) {
	d.mu.Lock()
	latest := d.cur == r
	d.mu.Unlock()
	if !latest {
		return
	}
	if err := d.post("/quitquitquit"); err != nil {
		d.cfg.Log.Warn("drain: Envoy is still up after a drain, and did not quit", "envoy_admin", d.cfg.EnvoyAdmin, "error", err)
		return
	}
	d.cfg.Log.Warn("drain: Envoy was still up after a drain that no termination followed: told it to quit, to be started again", "envoy_admin", d.cfg.EnvoyAdmin)
}

// post POSTs to Envoy's admin path (query included).
func (d *drainer) post(path string) error {
	resp, err := d.client.Post("http://"+d.cfg.EnvoyAdmin+path, "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// connections reads Envoy's server.total_connections.
func (d *drainer) connections() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.cfg.EnvoyAdmin+"/stats?filter=^server%5C.total_connections$", nil)
	if err != nil {
		return 0, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "server.total_connections: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("GET /stats: no server.total_connections (%s)", resp.Status)
}
