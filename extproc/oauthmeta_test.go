package extproc_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// oauthRoute is an MCP route whose policy has the MCP OAuth discovery (jwt.mcp).
var oauthRoute = func() extproctest.Route {
	r := streamableRoute
	r.Route, r.Policy = "agentgateway-system/mcp-oauth/rule/0", "oauth"
	return r
}()

// oauthPolicy is Strict JWT of testIssuer with the MCP OAuth discovery, as the translator makes
// it from jwtAuthentication.mcp.
func oauthPolicy(sg *signer) *policyv1.Policy {
	return &policyv1.Policy{
		Name: "oauth",
		Jwt: &policyv1.JWTAuthentication{
			Mode:      policyv1.JWTAuthentication_STRICT,
			Providers: []*policyv1.JWTProvider{{Issuer: testIssuer, Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: sg.jwks}}},
			Mcp: &policyv1.MCPResourceMetadata{
				AuthorizationServers: []string{testIssuer},
				ExtraJson:            `{"bearer_methods_supported":["header","body"],"resource_name":"Lab <tools>","scopes_supported":["read"]}`,
			},
		},
	}
}

// TestResourceMetadata: on a route with jwt.mcp, a GET of the well-known Protected Resource
// Metadata URL (RFC 9728) is answered by ext_proc at the request headers, without a token, with
// the resource that URL names (scheme from :scheme, the authority, the path after the prefix) and
// the issuer as authorization server; the extra members follow, and may replace
// bearer_methods_supported.
func TestResourceMetadata(t *testing.T) {
	sg := newSigner(t)
	h := newHarness(t, []*policyv1.Policy{labPolicy(sg), oauthPolicy(sg)})
	tail := `"authorization_servers":["https://issuer.test"],"bearer_methods_supported":["header","body"],"resource_name":"Lab <tools>","scopes_supported":["read"]}`
	tests := []struct {
		name, path, scheme, token string
		eos                       bool
		resource                  string
	}{
		{"path", "/.well-known/oauth-protected-resource/mcp", "http", "", true, "http://127.0.0.1:8080/mcp"},
		{"bare", "/.well-known/oauth-protected-resource", "http", "", true, "http://127.0.0.1:8080"},
		{"trailing slash", "/.well-known/oauth-protected-resource/", "http", "", true, "http://127.0.0.1:8080/"},
		{"query dropped", "/.well-known/oauth-protected-resource/mcp?x=1", "http", "", true, "http://127.0.0.1:8080/mcp"},
		{"https", "/.well-known/oauth-protected-resource/a/b", "https", "", true, "https://127.0.0.1:8080/a/b"},
		// a GET without END_STREAM on the headers (its end comes apart) is answered at the headers too
		{"no end of stream", "/.well-known/oauth-protected-resource/mcp", "http", "", false, "http://127.0.0.1:8080/mcp"},
		{"bad token", "/.well-known/oauth-protected-resource/mcp", "http", "abc", true, "http://127.0.0.1:8080/mcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := getHeaders(tt.path, tt.token)
			hs[3] = hdr(":scheme", tt.scheme)
			s := h.open(t, h.tcp, oauthRoute)
			resp := check(t)(s.RequestHeaders(hs, tt.eos))
			ir := resp.GetImmediateResponse()
			if ir == nil || ir.GetStatus().GetCode() != 200 {
				t.Fatalf("want an immediate 200, got %v", resp)
			}
			res, _ := json.Marshal(tt.resource)
			if want := `{"resource":` + string(res) + `,` + tail; string(ir.GetBody()) != want {
				t.Errorf("body\n%s\nwant\n%s", ir.GetBody(), want)
			}
			if !json.Valid(ir.GetBody()) {
				t.Errorf("body is not JSON: %s", ir.GetBody())
			}
			if hs := setHeaders(resp); hs["content-type"] != "application/json" || hs["www-authenticate"] != "" {
				t.Errorf("headers %v", hs)
			}
			if md := extproctest.Metadata(resp); md["authn"] != "none" || md["decision"] != "allow" {
				t.Errorf("metadata %v", md)
			}
		})
	}
	if n := h.metric(t, "mcpgate_authn_failures_total", nil); n != 0 {
		t.Errorf("authn failures = %v: the metadata was answered after authentication", n)
	}
	if recs := h.audit.records(t); len(recs) != 0 {
		t.Errorf("audit records for metadata requests: %v", recs)
	}
}

// TestResourceMetadataChallenge: on a route with jwt.mcp every JWT refusal's challenge names the
// metadata URL of the request's path (resource_metadata, RFC 9728 §5.1), after the realm and
// error; on a route without it the challenge and the well-known path are as before.
func TestResourceMetadataChallenge(t *testing.T) {
	sg := newSigner(t)
	h := newHarness(t, []*policyv1.Policy{labPolicy(sg), oauthPolicy(sg)})
	const rm = `resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource`
	tests := []struct {
		name, method, path, authority, token string
		www                                  string
	}{
		{"missing", "POST", "/mcp", "", "", `Bearer realm="mcpgate", ` + rm + `/mcp"`},
		{"invalid", "POST", "/mcp", "", "abc", `Bearer realm="mcpgate", error="invalid_token", ` + rm + `/mcp"`},
		{"query dropped", "POST", "/mcp?access_token=x", "", "", `Bearer realm="mcpgate", ` + rm + `/mcp"`},
		{"root", "POST", "/", "", "", `Bearer realm="mcpgate", ` + rm + `"`},
		{"GET stream", "GET", "/mcp", "", "", `Bearer realm="mcpgate", ` + rm + `/mcp"`},
		{"quote escaped", "POST", `/a"b\c`, "", "", `Bearer realm="mcpgate", ` + rm + `/a\"b\\c"`},
		// only GET is served: another method on the well-known path is an MCP request like any
		{"POST to the metadata", "POST", "/.well-known/oauth-protected-resource", "", "", `Bearer realm="mcpgate", ` + rm + `/.well-known/oauth-protected-resource"`},
		// an authority that no URL can hold: no metadata URL, and the metadata is not served
		{"bad authority", "GET", "/.well-known/oauth-protected-resource/mcp", "evil.example/x?", "", `Bearer realm="mcpgate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := postHeaders(tt.path, tt.token)
			if tt.method == "GET" {
				hs = getHeaders(tt.path, tt.token)
			}
			if tt.authority != "" {
				hs[0] = hdr(":authority", tt.authority)
			}
			s := h.open(t, h.tcp, oauthRoute)
			resp := check(t)(s.RequestHeaders(hs, tt.method == "GET"))
			ir := resp.GetImmediateResponse()
			if ir == nil || ir.GetStatus().GetCode() != 401 {
				t.Fatalf("want an immediate 401, got %v", resp)
			}
			if got := setHeaders(resp)["www-authenticate"]; got != tt.www {
				t.Errorf("www-authenticate\n%s\nwant\n%s", got, tt.www)
			}
			if tt.token != "" && strings.Contains(setHeaders(resp)["www-authenticate"], tt.token) {
				t.Error("the challenge holds the token")
			}
		})
	}
	// A valid token passes on the MCP route, without the token upstream.
	s := h.open(t, h.tcp, oauthRoute)
	tok := sg.token(t, gojwt.MapClaims{"sub": "alice"})
	resp := check(t)(s.RequestHeaders(getHeaders("/mcp", tok), true))
	if resp.GetImmediateResponse() != nil {
		t.Fatalf("a valid token was refused: %v", resp)
	}

	// The route whose policy has no jwt.mcp: the challenge is as before, and the well-known
	// path is an MCP request like any (401 without a token, passed with one).
	s = h.open(t, h.tcp, streamableRoute)
	resp = check(t)(s.RequestHeaders(getHeaders("/.well-known/oauth-protected-resource/mcp", ""), true))
	if ir := resp.GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 401 || setHeaders(resp)["www-authenticate"] != `Bearer realm="mcpgate"` {
		t.Fatalf("route without jwt.mcp: want the plain 401, got %v", resp)
	}
	s = h.open(t, h.tcp, streamableRoute)
	resp = check(t)(s.RequestHeaders(getHeaders("/.well-known/oauth-protected-resource/mcp", extproctest.LabToken), true))
	if resp.GetImmediateResponse() != nil {
		t.Fatalf("route without jwt.mcp answered the well-known path itself: %v", resp)
	}
}

// TestResourceMetadataNACK: a policy whose jwt.mcp extra members hold what ext_proc sets, or no
// authorization server, is refused (NACKed) naming the field; the last good policies stay.
func TestResourceMetadataNACK(t *testing.T) {
	sg := newSigner(t)
	h := newHarness(t, []*policyv1.Policy{oauthPolicy(sg)})
	for _, tt := range []struct{ name, extra, want string }{
		{"resource", `{"resource":"https://elsewhere.example"}`, "jwt.mcp.extra_json: resource is set by ext_proc"},
		{"not an object", `[1]`, "jwt.mcp.extra_json: json: cannot unmarshal array"},
	} {
		p := oauthPolicy(sg)
		p.Jwt.Mcp.ExtraJson = tt.extra
		res, err := anyOf(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.srv.HandlePolicies(contract.PolicyTypeURL, res); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "policy oauth") {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	p := oauthPolicy(sg)
	p.Jwt.Mcp.AuthorizationServers = nil
	res, _ := anyOf(p)
	if err := h.srv.HandlePolicies(contract.PolicyTypeURL, res); err == nil || !strings.Contains(err.Error(), "jwt.mcp: no authorization_servers") {
		t.Errorf("no authorization server: error %v", err)
	}
	s := h.open(t, h.tcp, oauthRoute)
	resp := check(t)(s.RequestHeaders(getHeaders("/.well-known/oauth-protected-resource", ""), true))
	if ir := resp.GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 200 || !strings.Contains(string(ir.GetBody()), `"resource_name":"Lab <tools>"`) {
		t.Fatalf("the last good policy does not serve: %v", resp)
	}
}

// TestResourceMetadataKeepsAuthenticator: a policy update that changes only jwt.mcp keeps the
// policy's authenticator, so its remote key set is not fetched again; the new metadata serves.
func TestResourceMetadataKeepsAuthenticator(t *testing.T) {
	sg := newSigner(t)
	var fetches atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, sg.jwks)
	}))
	t.Cleanup(jwks.Close)
	remote := func(extra string) *policyv1.Policy {
		p := oauthPolicy(sg)
		p.Jwt.Providers[0].Jwks = &policyv1.JWTProvider_RemoteJwks{RemoteJwks: &policyv1.RemoteJWKS{Url: jwks.URL, CacheDuration: durationpb.New(time.Hour)}}
		p.Jwt.Mcp.ExtraJson = extra
		return p
	}
	h := newHarness(t, []*policyv1.Policy{remote(`{"resource_name":"one"}`)})
	tok := sg.token(t, gojwt.MapClaims{"sub": "alice"})
	passes := func() {
		t.Helper()
		s := h.open(t, h.tcp, oauthRoute)
		if resp := check(t)(s.RequestHeaders(getHeaders("/mcp", tok), true)); resp.GetImmediateResponse() != nil {
			t.Fatalf("a valid token was refused: %v", resp)
		}
	}
	passes()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d key set fetches, want 1", n)
	}
	h.push(t, remote(`{"resource_name":"two"}`))
	waitFor(t, "the new metadata", func() bool {
		s := h.open(t, h.tcp, oauthRoute)
		resp := check(t)(s.RequestHeaders(getHeaders("/.well-known/oauth-protected-resource", ""), true))
		return strings.Contains(string(resp.GetImmediateResponse().GetBody()), `"resource_name":"two"`)
	})
	passes()
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d key set fetches after a metadata change, want 1 (the authenticator was replaced)", n)
	}
}
