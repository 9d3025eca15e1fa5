package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// fileOAuth is the MCP OAuth discovery test's Gateway, route and policy.
const fileOAuth = "e2e-oauth.yaml"

// TestMCPOAuthDiscovery: an MCP client discovers the authorization server of a route under
// jwtAuthentication.mcp as the MCP authorization specification has it, with the go-sdk's own
// helpers (oauthex): its first request without a token gets 401 whose WWW-Authenticate names the
// resource metadata URL; that URL, public, serves Protected Resource Metadata (RFC 9728) whose
// resource is the MCP server's URL and whose authorization server is the provider's issuer; the
// root well-known URL describes the origin. With a token of that issuer the client lists tools.
func TestMCPOAuthDiscovery(t *testing.T) {
	s := env
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	as, err := newTestIssuer()
	if err != nil {
		t.Fatal(err)
	}
	as.issuer = "https://auth.e2e.mcpgate.test/realms/mcp"
	var jwks json.RawMessage = []byte(as.jwks())
	compact, err := json.Marshal(jwks) // one line, for the YAML's quoted scalar
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://" + addr(free[0])
	server := origin + "/mcp"
	serveTestdata(t, fileOAuth, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "FETCH_PORT": strconv.Itoa(s.ports.fetch),
		"ISSUER": as.issuer, "JWKS": string(compact), "AUDIENCE": server})

	var challenge string
	eventually(t, "the OAuth Gateway answers 401 naming its resource metadata", func() error {
		a, err := s.request(http.MethodPost, server, "", initializeBody)
		if err != nil {
			return err
		}
		challenge = a.header.Get("WWW-Authenticate")
		if a.status != http.StatusUnauthorized || challenge == "" {
			return fmt.Errorf("POST /mcp without a token: %d %v %q, want 401 with WWW-Authenticate", a.status, a.header, a.body)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("metadata named by the 401", func(t *testing.T) {
		cs, err := oauthex.ParseWWWAuthenticate([]string{challenge})
		if err != nil {
			t.Fatalf("WWW-Authenticate %q: %v", challenge, err)
		}
		if len(cs) != 1 || cs[0].Scheme != "bearer" || cs[0].Params["realm"] != "mcpgate" {
			t.Fatalf("challenges %+v, want one Bearer realm=mcpgate", cs)
		}
		metadataURL := cs[0].Params["resource_metadata"]
		if want := origin + "/.well-known/oauth-protected-resource/mcp"; metadataURL != want {
			t.Fatalf("resource_metadata %q, want %q", metadataURL, want)
		}
		// The go-sdk checks that resource is the MCP server's URL, and the authorization
		// servers' URLs.
		prm, err := oauthex.GetProtectedResourceMetadata(ctx, metadataURL, server, nil)
		if err != nil {
			t.Fatal(err)
		}
		if prm.Resource != server || !slices.Equal(prm.AuthorizationServers, []string{as.issuer}) ||
			!slices.Equal(prm.BearerMethodsSupported, []string{"header"}) ||
			prm.ResourceName != "mcpgate e2e fetch" || !slices.Equal(prm.ScopesSupported, []string{"mcp:tools"}) {
			t.Errorf("metadata %+v", prm)
		}
	})

	t.Run("metadata at the root", func(t *testing.T) {
		prm, err := oauthex.GetProtectedResourceMetadata(ctx, origin+"/.well-known/oauth-protected-resource", origin, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(prm.AuthorizationServers, []string{as.issuer}) {
			t.Errorf("metadata %+v", prm)
		}
	})

	t.Run("metadata answered by ext_proc on the route", func(t *testing.T) {
		const host = "metadata.oauth.test"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+"/.well-known/oauth-protected-resource/mcp", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var prm oauthex.ProtectedResourceMetadata
		if err := json.NewDecoder(resp.Body).Decode(&prm); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || prm.Resource != "http://"+host+"/mcp" {
			t.Errorf("GET with Host %s: %d %v %+v, want 200 application/json for resource http://%s/mcp", host, resp.StatusCode, resp.Header, prm, host)
		}
		eventually(t, "the metadata request's access-log line", func() error {
			l, err := accessLine(host)
			if err != nil {
				return err
			}
			md, _ := l["mcpgate"].(map[string]any)
			if fmt.Sprint(l["response_code"]) != "200" || md["route"] != "e2e-oauth/mcp/rule/0" || md["authn"] != "none" {
				return fmt.Errorf("access-log line %v: want 200 on route e2e-oauth/mcp/rule/0, authn none", l)
			}
			return nil
		})
	})

	t.Run("tools with the issuer's token", func(t *testing.T) {
		// jwtAuthentication.mcp requires audiences: a token of the issuer for another resource
		// is refused, one for this server is taken.
		as.audience = "https://elsewhere.example/mcp"
		other, err := as.token("alice", "e2e")
		if err != nil {
			t.Fatal(err)
		}
		// (403 with invalid_token, as Envoy's jwt_authn answers an audience not allowed)
		if a, err := s.request(http.MethodPost, server, other, initializeBody); err != nil || a.status != http.StatusForbidden ||
			!strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("POST /mcp with a token for another audience: %v %v, want 403 invalid_token", a, err)
		}
		as.audience = server
		token, err := as.token("alice", "e2e")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cs := connectClient(t, &mcp.StreamableClientTransport{Endpoint: server, HTTPClient: bearerClient(token)})
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Tools) == 0 {
			t.Error("no tools listed")
		}
	})
}
