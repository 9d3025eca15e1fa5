package translator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// mcpSetMembers are the Protected Resource Metadata members mcpgate sets itself, refused in
// resourceMetadata: resource is the URL of each request, authorization_servers the provider's
// issuer.
var mcpSetMembers = []string{"resource", "authorization_servers"}

// translateJWTMCP checks jwtAuthentication.mcp (at field) of a JWT authentication translated
// into out and returns what ext_proc needs to serve its metadata. As agentgateway, it requires
// mode Strict and exactly one provider; provider and clientId, which make agentgateway proxy the
// authorization server's metadata and client registration, are refused. Unlike agentgateway, it
// requires the provider's audiences: MCP servers must accept only the tokens issued for them
// (MCP authorization, "Token Audience Binding and Validation"; RFC 8707), and without audiences
// any token of the issuer, for whatever resource, would pass.
func translateJWTMCP(j *v1alpha1.JWTAuthentication, out *policyv1.JWTAuthentication, field string, bad func(string, string)) *policyv1.MCPResourceMetadata {
	m := j.MCP
	if out.Mode != policyv1.JWTAuthentication_STRICT {
		bad(field, fmt.Sprintf("jwtAuthentication.mcp requires mode Strict, found %s", j.Mode))
	}
	if n := len(j.Providers); n != 1 {
		bad(field, fmt.Sprintf("jwtAuthentication.mcp requires exactly one provider, found %d", n))
	}
	if m.Provider != nil {
		bad(field+".provider", "not supported by mcpgate: it does not proxy the authorization server; MCP clients use the issuer's own metadata")
	}
	if m.ClientID != nil {
		bad(field+".clientId", "not supported by mcpgate: it does not proxy client registration; MCP clients register with the issuer")
	}
	res := &policyv1.MCPResourceMetadata{}
	if len(j.Providers) == 1 {
		iss := j.Providers[0].Issuer
		if msg := issuerURLProblem(iss); msg != "" {
			bad(strings.TrimSuffix(field, ".mcp")+".providers[0].issuer", msg)
		}
		res.AuthorizationServers = []string{iss}
		if len(j.Providers[0].Audiences) == 0 {
			bad(strings.TrimSuffix(field, ".mcp")+".providers[0].audiences", "jwtAuthentication.mcp requires audiences: an MCP server must accept only the tokens issued for it "+
				"(MCP authorization, RFC 8707), and without audiences any token of the issuer passes; list the resource URL(s) clients ask their tokens for")
		}
	}
	extra, problems := canonicalMembers(m.ResourceMetadata)
	for _, p := range problems {
		bad(field+".resourceMetadata."+p[0], p[1])
	}
	res.ExtraJson = extra
	return res
}

// issuerURLProblem says why iss cannot be an authorization server's issuer identifier in
// Protected Resource Metadata (RFC 8414 §2: a URL with the https scheme and no query or
// fragment; http is accepted too, for an authorization server on a private network or loopback
// in development, which MCP clients accept), or "".
func issuerURLProblem(iss string) string {
	u, err := url.Parse(iss)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Sprintf("jwtAuthentication.mcp names the issuer as the authorization server: %q must be an https (or http) URL", iss)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(iss, "#"):
		return fmt.Sprintf("jwtAuthentication.mcp names the issuer as the authorization server: %q must have no query or fragment (RFC 8414)", iss)
	}
	return ""
}

// canonicalMembers returns the members as one JSON object with sorted keys (nested objects
// too) and no insignificant whitespace, "" for none, and the problems of the members it leaves
// out, as {member, message}.
func canonicalMembers(members map[string]apiextensionsv1.JSON) (string, [][2]string) {
	if len(members) == 0 {
		return "", nil
	}
	var problems [][2]string
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if slices.Contains(mcpSetMembers, k) {
			problems = append(problems, [2]string{k, "set by mcpgate (resource is the URL the metadata is asked for, authorization_servers the provider's issuer): remove it"})
			continue
		}
		v, err := canonicalJSON(members[k].Raw)
		if err != nil {
			problems = append(problems, [2]string{k, "not JSON: " + err.Error()})
			continue
		}
		if k == "bearer_methods_supported" && string(v) != `["header"]` {
			// ext_proc reads the token from the Authorization header only: a client told to send
			// it in the body or the query would get 401, and a token in a URL leaks into logs.
			problems = append(problems, [2]string{k, `must be ["header"] (the default): mcpgate reads the token from the Authorization header only`})
			continue
		}
		if b.Len() == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(v)
	}
	if b.Len() == 0 {
		return "", problems
	}
	b.WriteByte('}')
	return b.String(), problems
}

// canonicalJSON re-encodes raw with sorted object keys and numbers as written.
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one value at offset %s", strconv.FormatInt(dec.InputOffset(), 10))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
