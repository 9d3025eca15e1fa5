package mux

import "testing"

// TestResolveEndpoint: an SSE target's endpoint is posted to on the target's upstream: relative
// to the target's path, or absolute with the host the target was sent or the upstream's; another
// host or scheme, or user info, is refused.
func TestResolveEndpoint(t *testing.T) {
	const base, path, host = "http://mux-upstream", "/srv/sse", "gw.example"
	for ep, want := range map[string]string{
		"/srv/messages?sessionId=1":                   "http://mux-upstream/srv/messages?sessionId=1",
		"messages?sessionId=2":                        "http://mux-upstream/srv/messages?sessionId=2",
		"?sessionid=3":                                "http://mux-upstream/srv/sse?sessionid=3",
		" /m?s=4\n":                                   "http://mux-upstream/m?s=4",
		"https://gw.example/messages?s=5":             "http://mux-upstream/messages?s=5",
		"http://GW.example/messages?s=6":              "http://mux-upstream/messages?s=6",
		"http://mux-upstream/messages?s=7":            "http://mux-upstream/messages?s=7",
		"http://evil.example/messages?s=8":            "",
		"//evil.example/messages":                     "",
		"ftp://gw.example/messages":                   "",
		"http://user:pw@gw.example/messages?s=9":      "",
		"http://gw.example.evil.example/messages?s=1": "",
	} {
		got, err := resolveEndpoint(base, path, host, ep)
		switch {
		case want == "" && err == nil:
			t.Errorf("resolveEndpoint(%q) = %q, want it refused", ep, got)
		case want != "" && (err != nil || got != want):
			t.Errorf("resolveEndpoint(%q) = %q, %v; want %q", ep, got, err, want)
		}
	}
}
