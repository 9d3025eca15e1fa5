package file

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1alpha2 "sigs.k8s.io/gateway-api/apis/v1alpha2"
	gwv1alpha3 "sigs.k8s.io/gateway-api/apis/v1alpha3"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	gwxv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/api/v1alpha1/enterprise"
	"github.com/mcpgate/mcpgate/translator"
)

// catalog tells a kind mcpgate reads from one it knowingly skips (a Deployment beside its
// Service, a GRPCRoute) and from a mistake: a kind or apiVersion that no API server would
// serve in a group mcpgate reads from, or a kind mcpgate reads under another apiVersion. A
// mistake is refused, not skipped, because a policy skipped for a typo in its kind is a policy
// not enforced; kubectl would refuse it too ("no matches for kind").
type catalog struct {
	read map[string]kindInfo // by "apiVersion/Kind"
	// known returns the kinds of Kubernetes, Gateway API and agentgateway, built on first use
	// (a few ms): only a document of a kind mcpgate does not read needs them
	known func() (*runtime.Scheme, error)
	// other are the kinds of agentgateway's groups that mcpgate has no types for: skipped
	other map[schema.GroupVersionKind]bool
}

func newCatalog() *catalog {
	return &catalog{read: readKinds(), known: sync.OnceValues(knownKinds), other: map[schema.GroupVersionKind]bool{
		v1alpha1.GroupVersion.WithKind("AgentgatewayParameters"):             true,
		enterprise.GroupVersion.WithKind("EnterpriseAgentgatewayParameters"): true,
	}}
}

// knownKinds returns a scheme of the kinds of Kubernetes, Gateway API and agentgateway.
func knownKinds() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, gwv1.Install, gwv1beta1.Install,
		gwv1alpha2.Install, gwv1alpha3.Install, gwxv1alpha1.Install, v1alpha1.AddToScheme, enterprise.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("kinds: %w", err)
		}
	}
	return s, nil
}

// mistake returns the field ("apiVersion" or "kind") and a message when apiVersion and kind,
// which mcpgate does not read, are a mistake; "" when they are a kind mcpgate skips.
func (c *catalog) mistake(apiVersion, kind string) (field, msg string) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return "apiVersion", err.Error()
	}
	known, err := c.known()
	if err != nil {
		return "kind", err.Error()
	}
	gvk := gv.WithKind(kind)
	if known.Recognizes(gvk) || c.other[gvk] {
		return "", ""
	}
	// the kinds mcpgate reads that kind may have meant: the same name in any case
	var meant []string
	for k := range c.read {
		i := strings.LastIndexByte(k, '/')
		if strings.EqualFold(k[i+1:], kind) && !slices.Contains(meant, k[i+1:]) {
			meant = append(meant, k[i+1:])
		}
	}
	slices.Sort(meant)
	if len(meant) == 1 && meant[0] == kind {
		// a kind mcpgate reads, under an apiVersion it is not read from
		return "apiVersion", fmt.Sprintf("%s is not served in %s: use %s", kind, apiVersion, strings.Join(c.versionsOf(kind), " or "))
	}
	if !known.IsGroupRegistered(gv.Group) && len(meant) == 0 {
		return "", "" // a group mcpgate knows nothing of: someone else's kind
	}
	msg = fmt.Sprintf("no kind %q in %s", kind, apiVersion)
	if len(meant) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(meant, " or "))
	}
	return "kind", msg
}

// policyKind says whether a document of apiVersion and kind that does not load may be a policy
// (maybe), and which policy kind it is read as ("" when its kind does not read): a policy kind in
// any letter case and under any apiVersion, or an unknown kind of an agentgateway group (a
// misspelt policy kind), or a BackendTLSPolicy (maybe, never read as one: the file is blind). A
// document of another kind mcpgate reads (in any letter case) is not
// one: its absence fails closed by itself (no route, no backend, no Gateway, no Secret); nor is
// a document of a kind someone else reads.
func (c *catalog) policyKind(apiVersion, kind string) (policy string, maybe bool) {
	switch {
	case kind == "":
		return "", true
	case strings.EqualFold(kind, translator.KindAgentgatewayPolicy):
		return translator.KindAgentgatewayPolicy, true
	case strings.EqualFold(kind, translator.KindEnterpriseAgentgatewayPolicy):
		return translator.KindEnterpriseAgentgatewayPolicy, true
	case strings.EqualFold(kind, translator.KindBackendTLSPolicy):
		// a policy, not kept: without it its Service's ports would be reached in plaintext
		return "", true
	}
	for k := range c.read {
		if strings.EqualFold(k[strings.LastIndexByte(k, '/')+1:], kind) {
			return "", false
		}
	}
	switch group, _, _ := strings.Cut(apiVersion, "/"); {
	case group == enterprise.GroupVersion.Group:
		return translator.KindEnterpriseAgentgatewayPolicy, true
	case group == v1alpha1.GroupVersion.Group:
		return translator.KindAgentgatewayPolicy, true
	case group == gwv1.GroupName && strings.Contains(strings.ToLower(kind), "polic"):
		return "", true // a misspelt BackendTLSPolicy
	}
	return "", false
}

// versionsOf lists the apiVersions kind is read from.
func (c *catalog) versionsOf(kind string) []string {
	var out []string
	for k := range c.read {
		if v, ok := strings.CutSuffix(k, "/"+kind); ok {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}
