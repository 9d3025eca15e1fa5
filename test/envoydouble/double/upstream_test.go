package double_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// httptestServer is an upstream that records the requests it received.
type httptestServer struct {
	addr string
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	path, host, body string
	header           http.Header
	contentLength    int64
}

func newUpstream(t *testing.T, h http.HandlerFunc) *httptestServer {
	u := &httptestServer{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seenRequest{path: r.URL.RequestURI(), host: r.Host, body: string(b), header: r.Header.Clone(), contentLength: r.ContentLength})
		u.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		h(w, r)
	}))
	t.Cleanup(s.Close)
	u.addr = s.Listener.Addr().String()
	return u
}

func (u *httptestServer) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *httptestServer) last() seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return seenRequest{}
	}
	return u.reqs[len(u.reqs)-1]
}
