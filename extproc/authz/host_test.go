package authz

import "testing"

// TestRequestHostAsEnvoyMatchesIt: request.host is the :authority as Envoy picks the virtual
// host by it (case ignored, the port ignored: ignore_port_in_host_matching), and without a
// trailing dot, so that a DENY rule on a host holds for every spelling that reaches it.
func TestRequestHostAsEnvoyMatchesIt(t *testing.T) {
	rs := compile(t, newEnv(t), deny("P/ns/deny-admin#traffic[0]", `request.host == "admin.example.com"`))
	for _, host := range []string{
		"admin.example.com", "Admin.example.com", "ADMIN.EXAMPLE.COM", "admin.example.com:8080",
		"admin.example.com.", "Admin.Example.Com.:443", "admin.example.com:",
	} {
		if d := rs.Evaluate(t.Context(), &Input{Host: host}); d.Allowed || d.Errors != nil {
			t.Errorf("host %q: %+v, want denied by the DENY rule", host, d)
		}
	}
	for _, host := range []string{"admin.example.com..", "admin.example.co", "xadmin.example.com", "admin.example.com.evil", "", "\u212aadmin.example.com"} {
		if d := rs.Evaluate(t.Context(), &Input{Host: host}); !d.Allowed || d.Errors != nil {
			t.Errorf("host %q: %+v, want allowed", host, d)
		}
	}
	for raw, want := range map[string]string{
		"[::1]:8080":            "[::1]",
		"[::1]":                 "[::1]",
		"[FE80::1]:443":         "[fe80::1]",
		"10.0.0.1:80":           "10.0.0.1",
		"Gateway.Example:8080":  "gateway.example",
		"gateway.example.":      "gateway.example",
		"gateway.example..":     "gateway.example.",
		"gw":                    "gw",
		"\u212a.example":        "\u212a.example", // ASCII case only, as Envoy folds it
		"Ünïcode.Example:1":     "Ünïcode.example",
		"user@Host.Example:123": "user@host.example",
	} {
		if got := requestHost(raw); got != want {
			t.Errorf("requestHost(%q) = %q, want %q", raw, got, want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { requestHost("gateway.example:8080") }); n != 0 {
		t.Errorf("a lower-case host costs %v allocations", n)
	}
}
