package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

const (
	// fileRateLimit is the rate limit test's Gateway, routes and policy.
	fileRateLimit = "e2e-ratelimit.yaml"
	// fileRateLimitGateway is the Gateway-level rate limit test's Gateway, routes and policies.
	fileRateLimitGateway = "e2e-ratelimit-gateway.yaml"
)

// rateLimitGateway serves a rate limit test's testdata file on a free port, waits until probe
// answers 200 (the probe's path must not spend a token the test counts) and returns expect: it
// makes an MCP call (POST initialize, one HTTP request) to a path of the Gateway and checks its
// status (and, for a 429, Envoy's body "local_rate_limited").
func rateLimitGateway(t *testing.T, file, probe string) (expect func(path string, status int, why string)) {
	s := env
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, file, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "FETCH_PORT": strconv.Itoa(s.ports.fetch)})
	base := "http://" + addr(free[0])
	call := func(path string) (httpAnswer, error) {
		return s.request(http.MethodPost, base+path, "", initializeBody)
	}
	eventually(t, "the rate limit Gateway serves "+probe, func() error {
		a, err := call(probe)
		if err == nil && a.status != http.StatusOK {
			err = fmt.Errorf("POST %s: %d %q, want 200", probe, a.status, a.body)
		}
		return err
	})
	return func(path string, status int, why string) {
		t.Helper()
		a, err := call(path)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != status || status == http.StatusTooManyRequests && a.body != "local_rate_limited" {
			t.Fatalf("POST %s: %d %q, want %d (%s)", path, a.status, a.body, status, why)
		}
	}
}

// TestLocalRateLimit: a policy with rateLimit.local [{requests: 2, unit: Hours}] on an HTTPRoute.
// Two MCP calls through it are answered by the server; the third gets Envoy's 429
// "local_rate_limited" and never reaches it, while another route of the same Gateway to the same
// server is not limited. The unit is Hours, not Minutes: Envoy's bucket refills continuously (one
// token every 30 s for 2 a minute), so no token can come back during the test. The readiness
// probe goes to the open route, so that it spends no token.
func TestLocalRateLimit(t *testing.T) {
	expect := rateLimitGateway(t, fileRateLimit, "/open")
	expect("/mcp", http.StatusOK, "the bucket holds 2")
	expect("/mcp", http.StatusOK, "the bucket holds 2")
	expect("/mcp", http.StatusTooManyRequests, "third call")
	for range 3 {
		expect("/open", http.StatusOK, "not limited")
	}
}

// TestLocalRateLimitGateway: a policy with rateLimit.local [{requests: 3, unit: Hours}] on a
// Gateway is one bucket for the Gateway's port, shared by its routes (agentgateway: one limiter
// per policy): three MCP calls spread over /mcp and /other are answered, the fourth, on either
// route, gets 429 "local_rate_limited". /probe, under a route-level policy of its own, keeps its
// own bucket and answers after them.
func TestLocalRateLimitGateway(t *testing.T) {
	expect := rateLimitGateway(t, fileRateLimitGateway, "/probe")
	for _, path := range []string{"/mcp", "/other", "/mcp"} {
		expect(path, http.StatusOK, "the Gateway's bucket holds 3")
	}
	expect("/other", http.StatusTooManyRequests, "one bucket for the port, empty")
	expect("/mcp", http.StatusTooManyRequests, "one bucket for the port, empty")
	expect("/probe", http.StatusOK, "its own route-level bucket")
}
