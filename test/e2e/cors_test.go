package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Files of the CORS test: testdata/e2e-cors.yaml, and the lab's JWT policy aimed at its Gateway.
const (
	fileCORS    = "e2e-cors.yaml"
	fileCORSJWT = "e2e-cors-jwt.yaml"
)

// browserOrigin is the origin the route's CORS filter allows: the MCP Inspector's web page.
const browserOrigin = "http://localhost:6274"

// corsGateway is the Gateway of testdata/e2e-cors.yaml while the test runs.
type corsGateway struct {
	addr string
}

// send sends method /mcp with the Host host ("" for the Gateway's address; a request that does not
// reach the server can have one of its own, to find its access-log line: the go-sdk server refuses
// a Host that is not its loopback address), the headers (pairs) and body, and reads the whole
// answer (at most 64 KiB).
func (g *corsGateway) send(method, host, body string, hdr ...string) (httpAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+g.addr+"/mcp", strings.NewReader(body))
	if err != nil {
		return httpAnswer{}, err
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return httpAnswer{}, fmt.Errorf("%s /mcp: %w", method, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return httpAnswer{}, fmt.Errorf("%s /mcp: body: %w", method, err)
	}
	return httpAnswer{status: resp.StatusCode, header: resp.Header, body: string(data)}, nil
}

// accessLine is the data plane's access-log line of the request sent with Host host.
func accessLine(host string) (map[string]any, error) {
	lines, err := jsonLines(env.stdoutLog())
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		if l["authority"] == host {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no access-log line with authority %s", host)
}

// TestCORSPreflightUnderStrictJWT: a browser MCP client behind the lab's Strict JWT policy. The
// route's CORS filter makes Envoy answer the preflight (OPTIONS with Origin and
// Access-Control-Request-Method, which a browser sends without the token before each POST) from
// the allowed origin itself: 200 with the allow headers, ext_proc never authenticates it. A
// preflight from another origin is answered by Envoy too, 200 without Access-Control-Allow-Origin
// (forward_not_matching_preflights false, as Envoy Gateway sets it): the browser refuses the call,
// and neither ext_proc's authentication nor the server sees the preflight.
// With the lab's token the session's POSTs, tools/list included, succeed with
// Access-Control-Allow-Origin and Mcp-Session-Id exposed; without it the 401 carries the CORS
// headers too, so the page can read WWW-Authenticate.
func TestCORSPreflightUnderStrictJWT(t *testing.T) {
	s := env
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileCORS, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "FETCH_PORT": strconv.Itoa(s.ports.fetch)})
	policy, err := s.lab.editExample(fileJWT, func(obj map[string]any) error {
		obj["metadata"].(map[string]any)["namespace"] = "e2e-cors"
		obj["spec"].(map[string]any)["targetRefs"].([]any)[0].(map[string]any)["name"] = "cors"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.lab.put(fileCORSJWT, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.lab.remove(fileCORSJWT); err != nil {
			t.Error(err)
		}
	})
	g := &corsGateway{addr: addr(free[0])}
	jsonPost := []string{"content-type", "application/json", "accept", "application/json, text/event-stream"}
	eventually(t, "the CORS Gateway serves /mcp under the Strict JWT policy", func() error {
		a, err := g.send(http.MethodPost, "ready.cors.test", initializeBody, jsonPost...)
		if err == nil && a.status != http.StatusUnauthorized {
			err = fmt.Errorf("POST /mcp without a token: %d %q, want 401", a.status, a.body)
		}
		return err
	})

	const (
		hostAllowed = "preflight-allowed.cors.test"
		hostOther   = "preflight-other.cors.test"
	)
	t.Run("preflight from the allowed origin", func(t *testing.T) {
		a, err := g.send(http.MethodOptions, hostAllowed, "", "origin", browserOrigin, "access-control-request-method", "POST",
			"access-control-request-headers", "authorization,content-type,mcp-protocol-version")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"Access-Control-Allow-Origin":  browserOrigin,
			"Access-Control-Allow-Methods": "GET, POST, DELETE",
			"Access-Control-Allow-Headers": "Authorization, Content-Type, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID",
			"Access-Control-Max-Age":       "600",
		}
		if a.status != http.StatusOK || a.body != "" {
			t.Errorf("preflight: %d %q, want 200 without body", a.status, a.body)
		}
		for k, v := range want {
			if got := a.header.Get(k); got != v {
				t.Errorf("preflight %s = %q, want %q", k, got, v)
			}
		}
		if a.header.Get("Access-Control-Allow-Credentials") != "" || a.header.Get("WWW-Authenticate") != "" {
			t.Errorf("preflight headers %v: want no credentials and no authentication challenge", a.header)
		}
	})

	t.Run("preflight from another origin", func(t *testing.T) {
		a, err := g.send(http.MethodOptions, hostOther, "", "origin", "https://evil.example", "access-control-request-method", "POST")
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK || a.header.Get("Access-Control-Allow-Origin") != "" || a.header.Get("WWW-Authenticate") != "" ||
			a.header.Get("Access-Control-Allow-Methods") != "GET, POST, DELETE" {
			t.Errorf("preflight from another origin: %d %v, want Envoy's 200 with the allow headers but no Access-Control-Allow-Origin", a.status, a.header)
		}
	})

	t.Run("ext_proc authenticated neither preflight", func(t *testing.T) {
		eventually(t, "access-log lines of both preflights", func() error {
			for _, c := range []struct {
				host, code string
				authn      any
			}{{hostAllowed, "200", nil}, {hostOther, "200", nil}} {
				l, err := accessLine(c.host)
				if err != nil {
					return err
				}
				md, _ := l["mcpgate"].(map[string]any)
				if l["method"] != http.MethodOptions || fmt.Sprint(l["response_code"]) != c.code || md["route"] != "e2e-cors/mcp/rule/0" || md["authn"] != c.authn {
					return fmt.Errorf("access-log line %v: want OPTIONS answered %s on route e2e-cors/mcp/rule/0 with mcpgate.authn %v", l, c.code, c.authn)
				}
			}
			return nil
		})
	})

	t.Run("tools/list with the lab's token", func(t *testing.T) {
		auth := []string{"origin", browserOrigin, "authorization", "Bearer " + s.devToken}
		a, err := g.send(http.MethodPost, "", initializeBody, append(auth, jsonPost...)...)
		if err != nil {
			t.Fatal(err)
		}
		session := a.header.Get("Mcp-Session-Id")
		if a.status != http.StatusOK || session == "" || a.header.Get("Access-Control-Allow-Origin") != browserOrigin {
			t.Fatalf("initialize: %d %v %q, want 200 with a session and Access-Control-Allow-Origin", a.status, a.header, a.body)
		}
		inSession := append(append(auth, jsonPost...), "mcp-session-id", session, "mcp-protocol-version", "2025-11-25")
		if a, err = g.send(http.MethodPost, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, inSession...); err != nil || a.status != http.StatusAccepted {
			t.Fatalf("notifications/initialized: %d %q %v, want 202", a.status, a.body, err)
		}
		a, err = g.send(http.MethodPost, "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, inSession...)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK || !strings.Contains(a.body, `"name":"fetch"`) {
			t.Errorf("tools/list: %d %q, want 200 listing fetch", a.status, a.body)
		}
		if a.header.Get("Access-Control-Allow-Origin") != browserOrigin || !strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
			t.Errorf("tools/list headers %v: want Access-Control-Allow-Origin %s and Mcp-Session-Id exposed", a.header, browserOrigin)
		}
	})

	t.Run("refusal readable by the page", func(t *testing.T) {
		a, err := g.send(http.MethodPost, "refused.cors.test", initializeBody, append([]string{"origin", browserOrigin}, jsonPost...)...)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusUnauthorized || a.header.Get("Access-Control-Allow-Origin") != browserOrigin ||
			!strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("POST without a token: %d %v, want 401 with WWW-Authenticate, Access-Control-Allow-Origin and WWW-Authenticate exposed", a.status, a.header)
		}
	})
}
