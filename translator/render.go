package translator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	yamlv3 "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/jwt"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// RedactedValue replaces secret header values and TLS private keys in printed configuration.
const RedactedValue = "<redacted>"

// Redacted returns m, or a copy of it whose secret values are replaced by RedactedValue: the
// credential headers a route adds (contract.IsCredentialName: an LLM backend's Authorization, a
// RequestHeaderModifier's X-Api-Key), also where a prefixMode Never route's ext_proc metadata
// repeats it for the resolver (contract.Mux.RequestHeaders); and the query of a policy's remote
// JWKS URL (redactedPolicy); the private key of an HTTPS listener's Secret (redactedSecret).
// Print configuration only through it.
func Redacted(m proto.Message) proto.Message {
	if p, ok := m.(*policyv1.Policy); ok {
		return redactedPolicy(p)
	}
	if s, ok := m.(*tlsv3.Secret); ok {
		return redactedSecret(s)
	}
	rc, ok := m.(*routev3.RouteConfiguration)
	if !ok || !hasSecretHeader(rc) {
		return m
	}
	rc = proto.Clone(rc).(*routev3.RouteConfiguration)
	redact := func(opts []*corev3.HeaderValueOption) {
		for _, o := range opts {
			if h := o.GetHeader(); h != nil && contract.IsCredentialName(h.Key) {
				h.Value, h.RawValue = RedactedValue, nil
			}
		}
	}
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			redact(r.RequestHeadersToAdd)
			redactMux(r.TypedPerFilterConfig)
			for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
				redact(cw.RequestHeadersToAdd)
				redactMux(cw.TypedPerFilterConfig) // a weighted rule's Never backend has its own
			}
		}
	}
	return rc
}

// redactedPolicy returns p, or a copy of it whose remote JWKS URLs with a query (or a fragment)
// have it redacted as ext_proc's logs redact them (jwt.RedactURL): a key set is public, but an
// IdP's URL may carry an access key in its query.
func redactedPolicy(p *policyv1.Policy) *policyv1.Policy {
	var out *policyv1.Policy
	for i, pv := range p.GetJwt().GetProviders() {
		u := pv.GetRemoteJwks().GetUrl()
		if !strings.ContainsAny(u, "?#") {
			continue
		}
		if out == nil {
			out = proto.Clone(p).(*policyv1.Policy)
		}
		out.Jwt.Providers[i].GetRemoteJwks().Url = jwt.RedactURL(u)
	}
	if out == nil {
		return p
	}
	return out
}

func hasSecretHeader(rc *routev3.RouteConfiguration) bool {
	secret := func(opts []*corev3.HeaderValueOption) bool {
		for _, o := range opts {
			if contract.IsCredentialName(o.GetHeader().GetKey()) {
				return true
			}
		}
		return false
	}
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if secret(r.RequestHeadersToAdd) || muxMayHoldSecret(r.TypedPerFilterConfig[ExtProcFilterName]) {
				return true
			}
			for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
				if secret(cw.RequestHeadersToAdd) || muxMayHoldSecret(cw.TypedPerFilterConfig[ExtProcFilterName]) {
					return true
				}
			}
		}
	}
	return false
}

// muxMayHoldSecret reports whether a route's ExtProcPerRoute may carry a contract.Mux with
// request header changes, which may set a secret header: a cheap scan, redactedMux decides.
func muxMayHoldSecret(a *anypb.Any) bool {
	return a != nil && bytes.Contains(a.Value, []byte(contract.MetadataMux)) && bytes.Contains(a.Value, []byte(`"requestHeaders"`))
}

// redactMux replaces, in a route's or weighted cluster's typed_per_filter_config, an ext_proc
// per-route config whose contract.Mux holds a secret header value by its redacted copy.
func redactMux(cfg map[string]*anypb.Any) {
	if a := cfg[ExtProcFilterName]; muxMayHoldSecret(a) {
		cfg[ExtProcFilterName] = redactedMux(a)
	}
}

// redactedMux returns the ExtProcPerRoute a with the secret header values of its
// contract.MetadataMux (RequestHeaders) replaced by RedactedValue; a itself when it has none or
// does not decode.
func redactedMux(a *anypb.Any) *anypb.Any {
	var pr extprocv3.ExtProcPerRoute
	if err := a.UnmarshalTo(&pr); err != nil {
		return a
	}
	changed := false
	for _, hv := range pr.GetOverrides().GetGrpcInitialMetadata() {
		if hv.GetKey() != contract.MetadataMux {
			continue
		}
		var mx contract.Mux
		if err := json.Unmarshal([]byte(hv.GetValue()), &mx); err != nil || mx.RequestHeaders == nil {
			continue
		}
		for i, h := range mx.RequestHeaders.Add {
			if contract.IsCredentialName(h.Name) {
				mx.RequestHeaders.Add[i].Value = RedactedValue
				changed = true
			}
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // RedactedValue's <> as they are
		if err := enc.Encode(mx); err == nil {
			hv.Value = strings.TrimSuffix(b.String(), "\n")
		}
	}
	if !changed {
		return a
	}
	out, err := anypb.New(&pr)
	if err != nil {
		return a
	}
	return out
}

// document is the printed form of an Output.
type document struct {
	// Gateways holds the printed gateways, keyed "NS/NAME".
	Gateways map[string]gatewayDocument `json:"gateways"`
	// Status holds every object's status, in Status.Objects order.
	Status []ObjectStatus `json:"status"`
	// Problems holds the refusals, each as FieldError.Error renders it.
	Problems []string `json:"problems,omitempty"`
	// Warnings holds the warnings, rendered like Problems.
	Warnings []string `json:"warnings,omitempty"`
}

// gatewayDocument is the printed form of a GatewayConfig: each resource as protojson with
// proto field names.
type gatewayDocument struct {
	// Listeners holds GatewayConfig.Listeners.
	Listeners []json.RawMessage `json:"listeners"`
	// Routes holds GatewayConfig.Routes, Authorization values redacted (see Redacted).
	Routes []json.RawMessage `json:"routes"`
	// Clusters holds GatewayConfig.Clusters.
	Clusters []json.RawMessage `json:"clusters"`
	// Endpoints holds GatewayConfig.Endpoints.
	Endpoints []json.RawMessage `json:"endpoints"`
	// Policies holds GatewayConfig.Policies, default values included.
	Policies []json.RawMessage `json:"policies"`
	// Secrets holds GatewayConfig.Secrets, private keys redacted (see Redacted).
	Secrets []json.RawMessage `json:"secrets,omitempty"`
}

// Marshal prints the output as "yaml" or "json": per gateway its xDS resources and policies
// (protojson with proto field names, secrets redacted), then every object's status and the
// problems. gateways limits the gateways printed ("NS/NAME"); none means all. An unknown
// gateway is an error.
func (o *Output) Marshal(format string, gateways ...string) ([]byte, error) {
	doc := document{Gateways: map[string]gatewayDocument{}, Status: o.Status.Objects()}
	if doc.Status == nil {
		doc.Status = []ObjectStatus{}
	}
	for i := range doc.Status {
		st, err := withoutUnsetTimes(doc.Status[i].Status)
		if err != nil {
			return nil, fmt.Errorf("status of %s %s/%s: %w", doc.Status[i].Kind, doc.Status[i].Namespace, doc.Status[i].Name, err)
		}
		doc.Status[i].Status = st
	}
	keys := gateways
	if len(keys) == 0 {
		keys = o.GatewayKeys()
	}
	// Envoy resources print as Envoy's YAML docs do: proto field names, no defaults.
	envoyJSON := protojson.MarshalOptions{UseProtoNames: true}
	for _, k := range keys {
		g, ok := o.Gateways[k]
		if !ok {
			return nil, fmt.Errorf("gateway %q is not in the output (served: %s)", k, strings.Join(o.GatewayKeys(), ", "))
		}
		var gd gatewayDocument
		var err error
		if gd.Listeners, err = marshalAll(g.Listeners, envoyJSON); err == nil {
			if gd.Routes, err = marshalAll(g.Routes, envoyJSON); err == nil {
				if gd.Clusters, err = marshalAll(g.Clusters, envoyJSON); err == nil {
					if gd.Endpoints, err = marshalAll(g.Endpoints, envoyJSON); err == nil {
						if gd.Policies, err = marshalAll(g.Policies, protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}); err == nil {
							gd.Secrets, err = marshalAll(g.Secrets, envoyJSON)
						}
					}
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("gateway %s: %w", k, err)
		}
		doc.Gateways[k] = gd
	}
	for _, p := range o.Status.Problems() {
		doc.Problems = append(doc.Problems, p.Error())
	}
	for _, w := range o.Status.Warnings() {
		doc.Warnings = append(doc.Warnings, w.Error())
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("marshal output: %w", err)
	}
	js := buf.Bytes()
	switch format {
	case "json":
		return js, nil
	case "yaml", "":
		y, err := orderedYAML(js)
		if err != nil {
			return nil, fmt.Errorf("convert output to YAML: %w", err)
		}
		return y, nil
	}
	return nil, fmt.Errorf("unknown format %q: use yaml or json", format)
}

// orderedYAML converts JSON to block-style YAML with the members in the JSON's order (a
// resource's fields in Envoy's order, name first, as Envoy's config dump shows them), where a
// conversion through maps would sort them.
func orderedYAML(js []byte) ([]byte, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	var block func(n *yamlv3.Node)
	block = func(n *yamlv3.Node) {
		n.Style &^= yamlv3.FlowStyle | yamlv3.DoubleQuotedStyle // quoted again where YAML needs it
		if n.Kind == yamlv3.ScalarNode && n.Tag == "!!str" && yaml11Special(n.Value) {
			n.Style = yamlv3.DoubleQuotedStyle
		}
		for _, c := range n.Content {
			block(c)
		}
	}
	block(&doc)
	var buf bytes.Buffer
	enc := yamlv3.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// yaml11Base60 matches a YAML 1.1 sexagesimal number ("1:20" is 80).
var yaml11Base60 = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$`)

// yaml11Special reports whether a YAML 1.1 reader (kubectl, sigs.k8s.io/yaml) takes the plain
// scalar s for a boolean (y, yes, on, off...) or a sexagesimal number, which a YAML 1.2 encoder
// leaves unquoted: such strings are quoted.
func yaml11Special(s string) bool {
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "on", "off":
		return true
	}
	return strings.Contains(s, ":") && yaml11Base60.MatchString(s)
}

// marshalAll prints messages with opts; policies print their defaults too (mode STRICT, action
// ALLOW), since those are the values that matter.
func marshalAll[T proto.Message](msgs []T, opts protojson.MarshalOptions) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		b, err := opts.Marshal(Redacted(m))
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		out = append(out, b)
	}
	return out, nil
}

// withoutUnsetTimes returns a status as JSON values without the conditions' lastTransitionTime,
// which a translation leaves unset (the provider that writes status sets it): printed, it would
// read null.
func withoutUnsetTimes(status any) (any, error) {
	b, err := json.Marshal(status)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // integers (observedGeneration) stay as written
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var strip func(v any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if t, ok := x["lastTransitionTime"]; ok && t == nil {
				delete(x, "lastTransitionTime")
			}
			for _, c := range x {
				strip(c)
			}
		case []any:
			for _, c := range x {
				strip(c)
			}
		}
	}
	strip(v)
	return v, nil
}
