package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

// fileRateLimit is the rate limit test's Gateway, routes and policy.
const fileRateLimit = "e2e-ratelimit.yaml"

// TestLocalRateLimit: a policy with rateLimit.local [{requests: 2, unit: Hours}] on an HTTPRoute.
// Two MCP calls (POST initialize, each one HTTP request) through it are answered by the server;
// the third gets Envoy's 429 "local_rate_limited" and never reaches it, while another route of
// the same Gateway to the same server is not limited. The unit is Hours, not Minutes: Envoy's
// bucket refills continuously (one token every 30 s for 2 a minute), so no token can come back
// during the test. The readiness probe goes to the open route, so that it spends no token.
func TestLocalRateLimit(t *testing.T) {
	s := env
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileRateLimit, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "FETCH_PORT": strconv.Itoa(s.ports.fetch)})
	base := "http://" + addr(free[0])
	call := func(path string) (httpAnswer, error) {
		return s.request(http.MethodPost, base+path, "", initializeBody)
	}
	eventually(t, "the rate limit Gateway serves /open", func() error {
		a, err := call("/open")
		if err == nil && a.status != http.StatusOK {
			err = fmt.Errorf("POST /open: %d %q, want 200", a.status, a.body)
		}
		return err
	})

	for i := 1; i <= 2; i++ {
		a, err := call("/mcp")
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK {
			t.Fatalf("call %d to /mcp: %d %q, want 200 (the bucket holds 2)", i, a.status, a.body)
		}
	}
	a, err := call("/mcp")
	if err != nil {
		t.Fatal(err)
	}
	if a.status != http.StatusTooManyRequests || a.body != "local_rate_limited" {
		t.Errorf("third call to /mcp: %d %q, want 429 local_rate_limited", a.status, a.body)
	}
	for i := 1; i <= 3; i++ {
		a, err := call("/open")
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK {
			t.Errorf("call %d to /open: %d %q, want 200 (not limited)", i, a.status, a.body)
		}
	}
}
