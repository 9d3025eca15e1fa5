// Command sseadapter is a transport adapter for the end-to-end suite: it serves an MCP server that
// speaks stdio over legacy HTTP+SSE (MCP 2024-11-05), so that a server that speaks only stdio and
// Streamable HTTP (the go-sdk conformance everything-server) can stand behind an SSE target.
//
// It is an adapter, not a test double: it changes no behaviour of the server, only its transport.
// Each GET of /sse opens a session: the go-sdk's own server transport (mcp.SSEServerTransport)
// sends the endpoint event (/message?sessionId=ID) and carries the session's messages, and a new
// process of the command (mcp.CommandTransport, stdin/stdout) serves it. The messages are copied
// both ways unchanged, one JSON-RPC message at a time: what the client POSTs goes to the process's
// stdin, what the process writes goes to the GET stream as message events. The session ends when
// its GET ends or the process does; its process is then closed (stdin closed, SIGTERM after 5 s).
//
// The HTTP checks are those of mcp.SSEHandler, which a go-sdk server over HTTP+SSE would use (it
// takes an *mcp.Server, not a process): DNS rebinding protection (a request to a loopback address
// with a Host that is not loopback is 403), Content-Type application/json on POST (else 415), an
// unknown session 404, a method other than GET and POST 405; mcp.SSEServerTransport itself refuses
// a body that is not a JSON-RPC message, or a request the server does not know, with 400.
//
// Usage:
//
//	sseadapter -addr 127.0.0.1:PORT -- COMMAND [ARG...]
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "address to listen on")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: sseadapter -addr HOST:PORT -- COMMAND [ARG...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a := &adapter{command: flag.Args(), log: log, sessions: map[string]*session{}}
	srv := &http.Server{Addr: *addr, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Info("sseadapter listening", "addr", *addr, "command", strings.Join(a.command, " "))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("sseadapter", "error", err)
		os.Exit(1)
	}
}

// adapter serves GET /sse (a new session) and POST /message?sessionId=ID (a message of one).
type adapter struct {
	command []string
	log     *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one SSE session: its transport, ready once connected (its endpoint event sent).
type session struct {
	transport *mcp.SSEServerTransport
	ready     chan struct{}
}

func (a *adapter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// As mcp.SSEHandler: DNS rebinding protection for a server on a loopback address.
	if local, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && local != nil {
		if isLoopback(local.String()) && !isLoopback(req.Host) {
			http.Error(w, fmt.Sprintf("Forbidden: invalid Host header %q", req.Host), http.StatusForbidden)
			return
		}
	}
	switch {
	case req.Method == http.MethodGet && req.URL.Path == "/sse":
		a.serveSession(w, req)
	case req.Method == http.MethodPost && req.URL.Path == "/message":
		a.serveMessage(w, req)
	case req.URL.Path == "/sse" || req.URL.Path == "/message":
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	default:
		http.NotFound(w, req)
	}
}

// serveMessage hands a POSTed message to its session's transport.
func (a *adapter) serveMessage(w http.ResponseWriter, req *http.Request) {
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "Content-Type must be 'application/json'", http.StatusUnsupportedMediaType)
		return
	}
	id := req.URL.Query().Get("sessionId")
	if id == "" {
		http.Error(w, "sessionId must be provided", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	s := a.sessions[id]
	a.mu.Unlock()
	if s == nil {
		http.Error(w, "session not found", http.StatusNotFound)
		return
	}
	select {
	case <-s.ready:
	case <-req.Context().Done():
		return
	}
	s.transport.ServeHTTP(w, req)
}

// serveSession serves one session for as long as its GET lasts: a process of the command on the
// other side, the messages copied both ways.
func (a *adapter) serveSession(w http.ResponseWriter, req *http.Request) {
	id := rand.Text()
	log := a.log.With("session", id)
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()

	cmd := exec.Command(a.command[0], a.command[1:]...)
	cmd.Stderr = os.Stderr
	proc, err := (&mcp.CommandTransport{Command: cmd}).Connect(ctx)
	if err != nil {
		log.Error("start the server", "command", a.command[0], "error", err)
		http.Error(w, "the server did not start", http.StatusInternalServerError)
		return
	}
	defer proc.Close()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	s := &session{transport: &mcp.SSEServerTransport{Endpoint: "/message?sessionId=" + id, Response: w}, ready: make(chan struct{})}
	a.mu.Lock()
	a.sessions[id] = s
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.sessions, id)
		a.mu.Unlock()
	}()
	client, err := s.transport.Connect(ctx) // sends the endpoint event
	if err != nil {
		log.Error("send the endpoint event", "error", err)
		return
	}
	defer client.Close()
	close(s.ready)
	log.Info("session opened", "pid", cmd.Process.Pid)

	// copy moves the messages one way until a Read or a Write fails, then ends the session.
	var wg sync.WaitGroup
	copyMessages := func(from, to mcp.Connection, what string) {
		defer wg.Done()
		defer cancel()
		for {
			msg, err := from.Read(ctx)
			if err != nil {
				log.Info("session ends", "side", what, "error", err)
				return
			}
			if err := to.Write(ctx, msg); err != nil {
				log.Info("session ends", "side", what, "error", err)
				return
			}
		}
	}
	wg.Add(2)
	go copyMessages(client, proc, "client to server")
	go copyMessages(proc, client, "server to client")
	<-ctx.Done()
	// Closing both sides unblocks the copy that still reads.
	client.Close()
	proc.Close()
	wg.Wait()
	log.Info("session closed")
}

// isLoopback says whether a host or host:port is localhost or a loopback IP address, as the
// go-sdk's DNS rebinding protection decides it.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
