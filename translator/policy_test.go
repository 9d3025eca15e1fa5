package translator_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/extproc/jwt"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
	"github.com/mcpgate/mcpgate/translator"
)

// TestRemoteJWKSURLAsExtProc: the lab's JWT policy with a remote JWKS at each URL. The translator
// accepts exactly the URLs that ext_proc's authenticator (jwt.New, given the served policy)
// accepts: a URL the translator served but ext_proc refused would make ext_proc reject the whole
// policy update, every other policy's edits with it. A refused URL names its field and shows no
// credentials. (That the refusal is the policy's alone is invalid-jwks.in.yaml's golden.)
func TestRemoteJWKSURLAsExtProc(t *testing.T) {
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer keys.Close()
	const field = "spec.traffic.jwtAuthentication.providers[0].jwks.remote.url"
	for _, tt := range []struct {
		url, want string // want: "" for accepted, else a part of the refusal
	}{
		{keys.URL + "/jwks", ""},
		{keys.URL + "/jwks?tenant=a", ""},
		{strings.Replace(keys.URL, "http://", "HTTP://", 1) + "/jwks", ""},
		{"https://", "with a host"},
		{"https://:443/jwks", "with a host"},
		{"https://[::1/jwks", "missing ']' in host"},
		{"http://idp.example:99999/jwks", "port 99999: want 1 to 65535"},
		{"http://idp.example:0/jwks", "port 0: want 1 to 65535"},
		{"https://user:s3cret@idp.example/jwks", `"https://REDACTED@idp.example/jwks": userinfo`},
		{"https://s3cret@idp.example/jwks", "userinfo"},
		{"https:idp.example/jwks", "want an absolute http or https URL"},
		{"ftp://idp.example/jwks", "want an absolute http or https URL"},
		{"/jwks", "want an absolute http or https URL"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			res := loadInputs(t, "testdata/lab.in.yaml")
			var pol *v1alpha1.AgentgatewayPolicy
			for _, p := range res.Policies {
				if p.Name == "mcp-jwt-auth" {
					pol = p
				}
			}
			pol.Spec.Traffic.JWTAuthentication.Providers[0].JWKS = v1alpha1.JWKS{Remote: &v1alpha1.RemoteJWKS{URL: tt.url}}
			out := translator.Translate(res, translator.Options{})
			key := translator.ObjectKey{Kind: translator.KindEnterpriseAgentgatewayPolicy, Namespace: pol.Namespace, Name: pol.Name}
			c := accepted(t, out.Status, key)
			served := out.Gateways["agentgateway-system/agentgateway"].Policies
			var jwtPolicy bool
			for _, p := range served {
				if p.GetJwt() == nil {
					continue
				}
				jwtPolicy = true
				a, err := jwt.New(p.GetJwt(), jwt.Options{})
				if err != nil {
					t.Fatalf("served policy %s: ext_proc refuses it: %v", p.GetName(), err)
				}
				a.Close()
			}
			if tt.want == "" {
				if c.Status != metav1.ConditionTrue || !jwtPolicy {
					t.Fatalf("Accepted %s %q, JWT policy served %v; want accepted and served", c.Status, c.Message, jwtPolicy)
				}
				return
			}
			if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, field+": ") || !strings.Contains(c.Message, tt.want) {
				t.Errorf("Accepted %s %q, want False naming %s and %q", c.Status, c.Message, field, tt.want)
			}
			if strings.Contains(c.Message, "s3cret") {
				t.Errorf("message %q shows the URL's credentials", c.Message)
			}
			if jwtPolicy {
				t.Errorf("served policies %v, want none with the refused JWT authentication", served)
			}
			// ext_proc refuses it too: the translator is not stricter than ext_proc.
			cfg := &policyv1.JWTAuthentication{Providers: []*policyv1.JWTProvider{{Issuer: "x",
				Jwks: &policyv1.JWTProvider_RemoteJwks{RemoteJwks: &policyv1.RemoteJWKS{Url: tt.url}}}}}
			if a, err := jwt.New(cfg, jwt.Options{}); err == nil {
				a.Close()
				t.Errorf("ext_proc accepts the URL the translator refuses")
			}
		})
	}
}
