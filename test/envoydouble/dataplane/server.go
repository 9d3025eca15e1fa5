// Package dataplane is the HTTP side of envoydouble: it binds the listeners of the active
// configuration and serves each request as Envoy's HTTP connection manager does (route matching,
// the ext_proc filter, the router, the access log).
package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// Server serves the active configuration.
type Server struct {
	log       *slog.Logger
	accessOut io.Writer

	snap  atomic.Pointer[xdsconf.Snapshot]
	ups   *upstreams
	grpcs *grpcConns

	mu        sync.Mutex
	listeners map[string]*liveListener
	// draining are the listeners an update removed whose requests in flight may finish
	// (stopListener), until they have or Close closes them.
	draining map[*liveListener]bool

	logMu    sync.Mutex
	logFiles map[string]*os.File

	conns *connLimit // the listeners' connections together
	stats *Stats
	// open counts the listeners' downstream connections (Envoy's server.total_connections;
	// the admin's are not among them).
	open atomic.Int64
	// drained is set by Drain: every HTTP/1.1 response then says Connection: close.
	drained atomic.Bool
}

// connLimit is the overload manager's global downstream connection limit: Envoy's listeners
// close each connection they accept while max are open on all of them together
// (TcpListenerImpl::rejectCxOverGlobalLimit, downstream_global_cx_overflow). max 0: none.
type connLimit struct {
	max    int64
	active atomic.Int64
}

// limitedListener is a listener under the global connection limit.
type limitedListener struct {
	net.Listener
	lim *connLimit
}

// Accept returns the next connection the limit admits, closing those it does not.
func (l limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.lim.max <= 0 {
			return c, err
		}
		if l.lim.active.Add(1) > l.lim.max {
			l.lim.active.Add(-1)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, lim: l.lim}, nil
	}
}

// countedConn is an admitted connection; closing it frees its place.
type countedConn struct {
	net.Conn
	lim  *connLimit
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.lim.active.Add(-1) })
	return c.Conn.Close()
}

type liveListener struct {
	name    string
	addr    string
	ln      net.Listener
	srv     *http.Server
	cfg     atomic.Pointer[xdsconf.Listener]
	serving bool // Serve was started (under Server.mu)
}

// New returns a server with the bootstrap's static configuration whose listeners hold at most
// maxConns connections together (0: no limit). Access log lines for the stdout logger go to
// accessOut.
func New(log *slog.Logger, accessOut io.Writer, initial *xdsconf.Snapshot, maxConns int64) *Server {
	s := &Server{log: log, accessOut: accessOut, listeners: map[string]*liveListener{}, draining: map[*liveListener]bool{},
		logFiles: map[string]*os.File{}, conns: &connLimit{max: maxConns}, stats: newStats()}
	s.snap.Store(initial)
	s.ups = newUpstreams(s.Snapshot)
	s.grpcs = &grpcConns{conns: map[string]*grpcEntry{}, ups: s.ups, snap: s.Snapshot, stats: s.stats}
	return s
}

// Snapshot is the active configuration.
func (s *Server) Snapshot() *xdsconf.Snapshot { return s.snap.Load() }

// Update makes snap the active configuration: new requests use it, requests in flight finish
// with the one they started with. Listeners are moved or closed to match; with bind (a listener
// update, or the bootstrap's static listeners) the new ones are bound, as Envoy binds a listener
// when it is added. A bound listener is served once warm, once its route configuration is known,
// as Envoy warms listeners on RDS; until then its previous version keeps serving. Bind failures
// are returned: Envoy rejects such a listener and the listener update that brought it, and tries
// again with the next listener update.
func (s *Server) Update(snap *xdsconf.Snapshot, bind bool) error {
	s.snap.Store(snap)
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, ll := range s.listeners {
		if l, ok := snap.Listeners[name]; !ok || l.Address.Addr() != ll.addr {
			s.stopListener(ll)
			delete(s.listeners, name)
		}
	}
	for name, l := range snap.Listeners {
		ll, ok := s.listeners[name]
		if !ok {
			if !bind {
				continue
			}
			var err error
			if ll, err = s.bindListener(l); err != nil {
				errs = append(errs, fmt.Errorf("listener %q: cannot bind %s: %w", name, l.Address.Addr(), err))
				continue
			}
			s.listeners[name] = ll
		}
		if l.Warm(snap) {
			ll.cfg.Store(l)
			s.serveListener(ll)
		}
	}
	return errors.Join(errs...)
}

// Listening reports the bound listeners (name → address), for the admin /listeners.
func (s *Server) Listening() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for n, ll := range s.listeners {
		out[n] = ll.ln.Addr().String()
	}
	return out
}

// bindListener binds l's address; it serves nothing until serveListener. A Unix socket (pipe)
// is bound as Envoy binds one (SocketImpl::bind): whatever file is at the path is removed first,
// a stale socket of an earlier run as much as a live one.
func (s *Server) bindListener(l *xdsconf.Listener) (*liveListener, error) {
	if l.Address.Network == "unix" {
		_ = os.Remove(l.Address.Path)
	}
	ln, err := net.Listen(l.Address.Network, l.Address.Addr())
	if err != nil {
		return nil, err
	}
	ll := &liveListener{name: l.Name, addr: l.Address.Addr()}
	ll.ln = tlsListener{Listener: limitedListener{Listener: ln, lim: s.conns}, s: s, ll: ll}
	ll.srv = &http.Server{
		// HTTP/1.1 only, over TLS too (chainConfig offers no h2)
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext:       connContext,
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(ll.cfg.Load(), w, r) }),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.open.Add(-1)
			}
		},
	}

	s.log.Info("listener bound", "listener", l.Name, "address", ln.Addr().String())
	return ll, nil
}

// serveListener starts accepting on a bound listener, once.
func (s *Server) serveListener(ll *liveListener) {
	if ll.serving {
		return
	}
	ll.serving = true
	go func() {
		if err := ll.srv.Serve(ll.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", "listener", ll.name, "err", err)
		}
	}()
	s.log.Info("listener warm: serving", "listener", ll.name)
}

// stopListener stops accepting and lets requests in flight finish (Envoy drains a removed
// listener), until Close at the latest. s.mu is held.
func (s *Server) stopListener(ll *liveListener) {
	s.log.Info("listener removed", "listener", ll.name, "address", ll.addr)
	if !ll.serving {
		ll.ln.Close()
		return
	}
	s.draining[ll] = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		_ = ll.srv.Shutdown(ctx)
		s.mu.Lock()
		delete(s.draining, ll)
		s.mu.Unlock()
	}()
}

// TotalConnections is the number of the listeners' open downstream connections (Envoy's
// server.total_connections gauge; the admin's are not counted).
func (s *Server) TotalConnections() int64 { return s.open.Load() }

// Drain drains every listener as Envoy's admin POST /drain_listeners does: requests are
// discouraged at once (--drain-strategy immediate: each HTTP/1.1 response says Connection: close
// and the connection closes after it), requests in flight go on, and an idle connection stays
// open until its next request or its client closes it (Envoy closes none: envoyproxy/envoy#42305);
// the listeners stop accepting after drainTime with graceful (Envoy's --drain-time-s: new
// connections are accepted meanwhile), at once without.
func (s *Server) Drain(graceful bool, drainTime time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drained.Store(true)
	lns := make([]net.Listener, 0, len(s.listeners))
	for _, ll := range s.listeners {
		lns = append(lns, ll.ln)
	}
	s.log.Info("draining listeners", "graceful", graceful, "drain_time", drainTime)
	stop := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	if !graceful {
		stop()
		return
	}
	time.AfterFunc(drainTime, stop)
}

// Close stops every listener and connection.
func (s *Server) Close() {
	s.mu.Lock()
	for _, ll := range s.listeners {
		ll.srv.Close()
		ll.ln.Close() // when it was not served yet, the http.Server does not know it
	}
	s.listeners = map[string]*liveListener{}
	for ll := range s.draining {
		ll.srv.Close()
	}
	s.mu.Unlock()
	s.ups.closeAll()
	s.grpcs.closeAll()
	s.logMu.Lock()
	for _, f := range s.logFiles {
		f.Close()
	}
	s.logMu.Unlock()
}

// writeAccessLog writes one line to a logger's sink: stdout, or a file opened in append mode.
func (s *Server) writeAccessLog(a *xdsconf.AccessLog, line []byte) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	var w io.Writer = s.accessOut
	if a.Path != "" && a.Path != "/dev/stdout" {
		f, ok := s.logFiles[a.Path]
		if !ok {
			var err error
			if f, err = os.OpenFile(a.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
				s.log.Error("access log", "path", a.Path, "err", err)
				return
			}
			s.logFiles[a.Path] = f
		}
		w = f
	}
	if _, err := w.Write(line); err != nil {
		s.log.Error("access log", "err", err)
	}
}
