package xdsconf

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// ExtProcFilterType is the typed_config type of envoy.filters.http.ext_proc.
const ExtProcFilterType = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"

// ExtProc is the compiled ExternalProcessor filter configuration.
type ExtProc struct {
	// Name is the filter's name in http_filters: the key of typed_per_filter_config.
	Name string
	// Service is grpc_service: the ext_proc server's cluster and initial metadata.
	Service GrpcTarget
	// FailureModeAllow is failure_mode_allow (mcpgate emits false: fail closed).
	FailureModeAllow bool
	// Mode is processing_mode (never nil: the zero mode, Envoy's defaults, when unset).
	Mode *extprocv3.ProcessingMode
	// RequestAttributes are request_attributes, sent with the first request-direction message.
	RequestAttributes []string
	// ResponseAttributes are response_attributes, sent with the first response-direction
	// message.
	ResponseAttributes []string
	// MessageTimeout is message_timeout; Envoy's default is 200 ms.
	MessageTimeout time.Duration
	// MaxMessageTimeout is max_message_timeout: the most a server's override_message_timeout
	// may ask for (0 = overrides ignored).
	MaxMessageTimeout time.Duration
	// Rules are mutation_rules: which header mutations of the server are applied.
	Rules MutationRules
	// ForwardAllowed are forward_rules.allowed_headers: when not empty, only the headers they
	// match are sent to the server.
	ForwardAllowed []*StringMatch
	// ForwardDisallowed are forward_rules.disallowed_headers: headers they match are not sent.
	ForwardDisallowed []*StringMatch
	// AllowModeOverride is allow_mode_override: whether a server's mode_override is honoured.
	AllowModeOverride bool
	// AllowedOverrideModes is allowed_override_modes (empty = any).
	AllowedOverrideModes []*extprocv3.ProcessingMode
	// DisableImmediateResponse is disable_immediate_response: a server's immediate response is
	// then a spurious message (status_on_error).
	DisableImmediateResponse bool
	// Metadata is metadata_options: the dynamic metadata namespaces sent and received.
	Metadata MetadataOptions
	// RouteCacheAction is route_cache_action (RETAIN when disable_clear_route_cache is set):
	// DEFAULT obeys the server's clear_route_cache, CLEAR always clears, RETAIN never.
	RouteCacheAction extprocv3.ExternalProcessor_RouteCacheAction
	// StatusOnError is status_on_error.code: the HTTP status of a failed stream (default 500).
	StatusOnError int
	// AllowContentLength is allow_content_length_header: content-length is kept even in the
	// body modes where Envoy removes it.
	AllowContentLength bool
}

// GrpcTarget is a GrpcService with envoy_grpc: the cluster and the initial metadata.
type GrpcTarget struct {
	// Cluster is envoy_grpc.cluster_name: the cluster the gRPC calls go to.
	Cluster string
	// Authority is envoy_grpc.authority, the cluster name when unset (the double's calls send
	// the cluster name whatever it says).
	Authority string
	// Metadata is initial_metadata, keys in lower case, sent with each stream.
	Metadata []MetadataKV
}

// MetadataKV is one gRPC initial metadata entry.
type MetadataKV struct {
	// Key is the metadata key in lower case; Value its value (raw_value when set, else value).
	Key, Value string
}

// MetadataOptions is ExternalProcessor.metadata_options.
type MetadataOptions struct {
	// ForwardingUntyped are forwarding_namespaces.untyped: the dynamic metadata namespaces sent
	// to the server in metadata_context.
	ForwardingUntyped []string
	// ForwardingTyped are forwarding_namespaces.typed (the double holds no typed metadata, so
	// it sends none).
	ForwardingTyped []string
	// ReceivingUntyped are receiving_namespaces.untyped: the namespaces of the server's
	// dynamic_metadata that are kept; the others are dropped.
	ReceivingUntyped []string
}

// MutationRules are the HeaderMutationRules (Envoy's defaults when unset: no routing headers, no
// x-envoy-*, system headers allowed, blocked mutations silently ignored).
type MutationRules struct {
	// AllowAllRouting is allow_all_routing: :method, :authority, :scheme and host may change.
	AllowAllRouting bool
	// AllowEnvoy is allow_envoy: x-envoy-* headers may change.
	AllowEnvoy bool
	// DisallowSystem is disallow_system: no ":"-prefixed header nor host may change.
	DisallowSystem bool
	// DisallowAll is disallow_all: no header may change.
	DisallowAll bool
	// DisallowIsError is disallow_is_error: a refused mutation fails the stream instead of being
	// ignored.
	DisallowIsError bool
	// AllowExpr is allow_expression: matching headers may change (after DisallowAll and
	// DisallowExpr); nil when unset.
	AllowExpr *regexp.Regexp
	// DisallowExpr is disallow_expression: matching headers may not change; nil when unset.
	DisallowExpr *regexp.Regexp
}

// ExtProcPerRoute is the compiled ExtProcPerRoute (typed_per_filter_config). Envoy merges the
// configs of every level (see MergePerRoute); a nil field is not set at its level.
type ExtProcPerRoute struct {
	// Disabled is disabled: the filter does not run for the request.
	Disabled bool
	// Mode is overrides.processing_mode.
	Mode *extprocv3.ProcessingMode
	// Service is overrides.grpc_service: another ext_proc server.
	Service *GrpcTarget
	// InitialMetadata is overrides.grpc_initial_metadata, merged into the service's (see
	// MergeMetadata).
	InitialMetadata []MetadataKV
	// FailureModeAllow is overrides.failure_mode_allow.
	FailureModeAllow *bool
	// ForwardingUntyped and ReceivingUntyped are metadata_options' namespace lists, each set
	// (non-nil) only when its forwarding_namespaces or receiving_namespaces message is.
	ForwardingUntyped, ReceivingUntyped *[]string
}

// MergePerRoute merges the per-route configs of a request, from the least to the most specific
// (route configuration, virtual host, route, weighted cluster; nil levels skipped), as Envoy's
// FilterConfigPerRoute(less_specific, more_specific) does: disabled is the most specific level's
// (a more specific override enables the filter again), processing_mode, grpc_service, the
// namespace lists and failure_mode_allow come from the most specific level that sets them, and
// grpc_initial_metadata accumulates: a key of a more specific level replaces the same key, and a
// key set only at a less specific level stays. It returns nil when no level has a config.
//
// Envoy source (source/extensions/filters/http/ext_proc/ext_proc.cc): Filter::mergePerRouteConfig
// folds Http::Utility::getAllPerFilterConfig, least specific first, with
// FilterConfigPerRoute(merged, typed_cfg); the weighted cluster's config is last
// (WeightedClusterEntry::perFilterConfigs appends it after the route's). That constructor takes
// grpc_initial_metadata from mergeGrpcInitialMetadata(less, more): a copy of the less specific
// list, then for each more specific header mergeHeaderValues replaces every entry with its key or
// appends it. So a weighted cluster's config that omits a key inherits the route's value for it.
func MergePerRoute(levels ...*ExtProcPerRoute) *ExtProcPerRoute {
	var out *ExtProcPerRoute
	for _, more := range levels {
		if more == nil {
			continue
		}
		if out == nil {
			c := *more
			out = &c
			continue
		}
		less := out
		out = &ExtProcPerRoute{Disabled: more.Disabled, Mode: more.Mode, Service: more.Service,
			InitialMetadata: MergeMetadata(less.InitialMetadata, more.InitialMetadata), FailureModeAllow: more.FailureModeAllow,
			ForwardingUntyped: more.ForwardingUntyped, ReceivingUntyped: more.ReceivingUntyped}
		if !more.Disabled && out.Mode == nil {
			out.Mode = less.Mode
		}
		if out.Service == nil {
			out.Service = less.Service
		}
		if out.FailureModeAllow == nil {
			out.FailureModeAllow = less.FailureModeAllow
		}
		if out.ForwardingUntyped == nil {
			out.ForwardingUntyped = less.ForwardingUntyped
		}
		if out.ReceivingUntyped == nil {
			out.ReceivingUntyped = less.ReceivingUntyped
		}
	}
	return out
}

// SupportedAttributes are the request_attributes / response_attributes the double can evaluate.
// Envoy accepts any CEL expression; the double refuses the others rather than send nothing.
var supportedAttributes = map[string]bool{
	"source.address": true, "source.port": true, "destination.address": true, "destination.port": true,
	"request.path": true, "request.url_path": true, "request.host": true, "request.scheme": true,
	"request.method": true, "request.id": true, "request.protocol": true, "request.query": true,
	"xds.route_name": true, "xds.cluster_name": true, "xds.virtual_host_name": true,
	"connection.mtls": true, "response.code": true,
	// The downstream client certificate's (dataplane/peercert.go).
	"connection.subject_peer_certificate": true, "connection.uri_san_peer_certificate": true,
	"connection.dns_san_peer_certificate": true, "connection.sha256_peer_certificate_digest": true,
}

// requestHeaderAttr matches request.headers['name'] and response.headers['name'].
var headerAttr = regexp.MustCompile(`^(request|response)\.headers\['([A-Za-z0-9_.:-]+)'\]$`)

// IsSupportedAttribute reports whether the double evaluates the attribute expression.
func IsSupportedAttribute(a string) bool { return supportedAttributes[a] || headerAttr.MatchString(a) }

// HeaderAttribute splits request.headers['x'] into ("request", "x").
func HeaderAttribute(a string) (string, string, bool) {
	m := headerAttr.FindStringSubmatch(a)
	if m == nil {
		return "", "", false
	}
	return m[1], strings.ToLower(m[2]), true
}

// CompileExtProc checks and compiles the ExternalProcessor filter configuration, reproducing the
// checks of Envoy's ext_proc config.cc that validation rules do not cover.
func CompileExtProc(name string, cfg *extprocv3.ExternalProcessor, path string) (*ExtProc, error) {
	if err := validate(cfg, path); err != nil {
		return nil, err
	}
	// Ignored on purpose: stat_prefix (stats), filter_metadata (filter state for logging),
	// deferred_close_timeout (observability mode only), emit_client_span (tracing).
	if err := checkFields(cfg, path, "grpc_service", "failure_mode_allow", "processing_mode",
		"request_attributes", "response_attributes", "message_timeout", "stat_prefix", "mutation_rules",
		"max_message_timeout", "forward_rules", "filter_metadata", "allow_mode_override",
		"disable_immediate_response", "metadata_options", "disable_clear_route_cache",
		"route_cache_action", "deferred_close_timeout", "allowed_override_modes", "status_on_error",
		"allow_content_length_header", "emit_client_span"); err != nil {
		return nil, err
	}
	if cfg.GetGrpcService() == nil {
		return nil, fmt.Errorf("%s.grpc_service: required (http_service is not implemented by envoydouble)", path)
	}
	if cfg.GetDisableClearRouteCache() && cfg.GetRouteCacheAction() != extprocv3.ExternalProcessor_DEFAULT {
		return nil, fmt.Errorf("%s: disable_clear_route_cache and route_cache_action cannot both be set", path)
	}
	out := &ExtProc{Name: name, FailureModeAllow: cfg.GetFailureModeAllow(), MessageTimeout: 200 * time.Millisecond,
		AllowModeOverride: cfg.GetAllowModeOverride(), DisableImmediateResponse: cfg.GetDisableImmediateResponse(),
		RouteCacheAction: cfg.GetRouteCacheAction(), StatusOnError: 500, AllowContentLength: cfg.GetAllowContentLengthHeader()}
	if cfg.GetDisableClearRouteCache() {
		out.RouteCacheAction = extprocv3.ExternalProcessor_RETAIN
	}
	svc, err := compileGrpcService(cfg.GetGrpcService(), path+".grpc_service")
	if err != nil {
		return nil, err
	}
	out.Service = *svc
	out.Mode = &extprocv3.ProcessingMode{}
	if cfg.GetProcessingMode() != nil {
		if err := checkMode(cfg.GetProcessingMode(), path+".processing_mode"); err != nil {
			return nil, err
		}
		out.Mode = proto.Clone(cfg.GetProcessingMode()).(*extprocv3.ProcessingMode)
	}
	for i, m := range cfg.GetAllowedOverrideModes() {
		if err := checkMode(m, join(path, idx("allowed_override_modes", i))); err != nil {
			return nil, err
		}
		out.AllowedOverrideModes = append(out.AllowedOverrideModes, m)
	}
	for i, a := range cfg.GetRequestAttributes() {
		if !IsSupportedAttribute(a) {
			return nil, fmt.Errorf("%s: attribute %q not implemented by envoydouble", join(path, idx("request_attributes", i)), a)
		}
	}
	for i, a := range cfg.GetResponseAttributes() {
		if !IsSupportedAttribute(a) {
			return nil, fmt.Errorf("%s: attribute %q not implemented by envoydouble", join(path, idx("response_attributes", i)), a)
		}
	}
	out.RequestAttributes, out.ResponseAttributes = cfg.GetRequestAttributes(), cfg.GetResponseAttributes()
	if t := cfg.GetMessageTimeout(); t != nil {
		out.MessageTimeout = t.AsDuration()
	}
	if t := cfg.GetMaxMessageTimeout(); t != nil {
		out.MaxMessageTimeout = t.AsDuration()
	}
	if r := cfg.GetMutationRules(); r != nil {
		if out.Rules, err = compileMutationRules(r, path+".mutation_rules"); err != nil {
			return nil, err
		}
	}
	if fr := cfg.GetForwardRules(); fr != nil {
		if out.ForwardAllowed, err = compileStringList(fr.GetAllowedHeaders().GetPatterns(), path+".forward_rules.allowed_headers"); err != nil {
			return nil, err
		}
		if out.ForwardDisallowed, err = compileStringList(fr.GetDisallowedHeaders().GetPatterns(), path+".forward_rules.disallowed_headers"); err != nil {
			return nil, err
		}
	}
	if mo := cfg.GetMetadataOptions(); mo != nil {
		m, err := compileMetadataOptions(mo, path+".metadata_options")
		if err != nil {
			return nil, err
		}
		out.Metadata = *m
	}
	if s := cfg.GetStatusOnError(); s != nil && s.GetCode() != 0 {
		out.StatusOnError = int(s.GetCode())
	}
	return out, nil
}

// BodyModeImplemented reports whether the double reproduces body mode m for the direction
// (response true for the response body): NONE, STREAMED and BUFFERED, and BUFFERED_PARTIAL for
// responses only (mcpgate emits no other).
func BodyModeImplemented(m extprocv3.ProcessingMode_BodySendMode, response bool) bool {
	switch m {
	case extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_BUFFERED:
		return true
	case extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		return response
	}
	return false
}

// checkMode refuses the body modes the double does not implement (BodyModeImplemented), and
// trailer modes SEND: the double never sends trailers.
func checkMode(m *extprocv3.ProcessingMode, path string) error {
	if !BodyModeImplemented(m.GetRequestBodyMode(), false) {
		return fmt.Errorf("%s.request_body_mode: %s not implemented by envoydouble (NONE, STREAMED, BUFFERED)", path, m.GetRequestBodyMode())
	}
	if !BodyModeImplemented(m.GetResponseBodyMode(), true) {
		return fmt.Errorf("%s.response_body_mode: %s not implemented by envoydouble (NONE, STREAMED, BUFFERED, BUFFERED_PARTIAL)", path, m.GetResponseBodyMode())
	}
	for _, tr := range []struct {
		field string
		mode  extprocv3.ProcessingMode_HeaderSendMode
	}{{"request_trailer_mode", m.GetRequestTrailerMode()}, {"response_trailer_mode", m.GetResponseTrailerMode()}} {
		if tr.mode == extprocv3.ProcessingMode_SEND {
			return fmt.Errorf("%s.%s: SEND not implemented by envoydouble (trailers are never sent)", path, tr.field)
		}
	}
	return nil
}

func compileGrpcService(g *corev3.GrpcService, path string) (*GrpcTarget, error) {
	// timeout: Envoy's ext_proc stream is long-lived; per-message time is message_timeout.
	if err := checkFields(g, path, "envoy_grpc", "initial_metadata", "timeout"); err != nil {
		return nil, err
	}
	eg := g.GetEnvoyGrpc()
	if eg == nil {
		return nil, fmt.Errorf("%s: only envoy_grpc is implemented by envoydouble", path)
	}
	if err := checkFields(eg, path+".envoy_grpc", "cluster_name", "authority"); err != nil {
		return nil, err
	}
	out := &GrpcTarget{Cluster: eg.GetClusterName(), Authority: eg.GetAuthority()}
	if out.Authority == "" {
		out.Authority = out.Cluster // Envoy: the :authority of an envoy_grpc call is the cluster name
	}
	md, err := compileMetadata(g.GetInitialMetadata(), path+".initial_metadata")
	if err != nil {
		return nil, err
	}
	out.Metadata = md
	return out, nil
}

func compileMetadata(hv []*corev3.HeaderValue, path string) ([]MetadataKV, error) {
	var out []MetadataKV
	for i, h := range hv {
		if err := checkFields(h, join(path, idx("", i)), "key", "value", "raw_value"); err != nil {
			return nil, err
		}
		v := h.GetValue()
		if len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		out = append(out, MetadataKV{Key: strings.ToLower(h.GetKey()), Value: v})
	}
	return out, nil
}

func compileMutationRules(r *mutationv3.HeaderMutationRules, path string) (MutationRules, error) {
	out := MutationRules{AllowAllRouting: r.GetAllowAllRouting().GetValue(), AllowEnvoy: r.GetAllowEnvoy().GetValue(),
		DisallowSystem: r.GetDisallowSystem().GetValue(), DisallowAll: r.GetDisallowAll().GetValue(),
		DisallowIsError: r.GetDisallowIsError().GetValue()}
	var err error
	if r.GetAllowExpression() != nil {
		if out.AllowExpr, err = compileRegex(r.GetAllowExpression(), path+".allow_expression"); err != nil {
			return out, err
		}
	}
	if r.GetDisallowExpression() != nil {
		if out.DisallowExpr, err = compileRegex(r.GetDisallowExpression(), path+".disallow_expression"); err != nil {
			return out, err
		}
	}
	return out, nil
}

func compileMetadataOptions(mo *extprocv3.MetadataOptions, path string) (*MetadataOptions, error) {
	if err := checkFields(mo, path, "forwarding_namespaces", "receiving_namespaces"); err != nil {
		return nil, err
	}
	if rn := mo.GetReceivingNamespaces(); len(rn.GetTyped()) > 0 {
		return nil, fmt.Errorf("%s.receiving_namespaces.typed: not implemented by envoydouble", path)
	}
	return &MetadataOptions{
		ForwardingUntyped: mo.GetForwardingNamespaces().GetUntyped(),
		ForwardingTyped:   mo.GetForwardingNamespaces().GetTyped(),
		ReceivingUntyped:  mo.GetReceivingNamespaces().GetUntyped(),
	}, nil
}

func compileExtProcPerRoute(a *anypb.Any, path string) (*ExtProcPerRoute, error) {
	var pr extprocv3.ExtProcPerRoute
	if err := unpack(a, &pr, path); err != nil {
		return nil, err
	}
	if err := validate(&pr, path); err != nil {
		return nil, err
	}
	if pr.GetDisabled() {
		return &ExtProcPerRoute{Disabled: true}, nil
	}
	ov := pr.GetOverrides()
	op := path + ".overrides"
	// request_attributes/response_attributes per route are not implemented in Envoy either.
	if err := checkFields(ov, op, "processing_mode", "grpc_service", "metadata_options",
		"grpc_initial_metadata", "failure_mode_allow"); err != nil {
		return nil, err
	}
	out := &ExtProcPerRoute{}
	if ov.GetProcessingMode() != nil {
		if err := checkMode(ov.GetProcessingMode(), op+".processing_mode"); err != nil {
			return nil, err
		}
		out.Mode = ov.GetProcessingMode()
	}
	if ov.GetGrpcService() != nil {
		svc, err := compileGrpcService(ov.GetGrpcService(), op+".grpc_service")
		if err != nil {
			return nil, err
		}
		out.Service = svc
	}
	md, err := compileMetadata(ov.GetGrpcInitialMetadata(), op+".grpc_initial_metadata")
	if err != nil {
		return nil, err
	}
	out.InitialMetadata = md
	if ov.GetFailureModeAllow() != nil {
		v := ov.GetFailureModeAllow().GetValue()
		out.FailureModeAllow = &v
	}
	if mo := ov.GetMetadataOptions(); mo != nil {
		m, err := compileMetadataOptions(mo, op+".metadata_options")
		if err != nil {
			return nil, err
		}
		if len(m.ForwardingTyped) > 0 {
			return nil, fmt.Errorf("%s.metadata_options.forwarding_namespaces.typed: not implemented by envoydouble", op)
		}
		if mo.GetForwardingNamespaces() != nil {
			out.ForwardingUntyped = &m.ForwardingUntyped
		}
		if mo.GetReceivingNamespaces() != nil {
			out.ReceivingUntyped = &m.ReceivingUntyped
		}
	}
	return out, nil
}

// MergeMetadata merges more specific grpc_initial_metadata into a less specific list as Envoy's
// mergeHeaderValues does (ext_proc.cc, for per-route levels and into the filter's
// grpc_service.initial_metadata): every entry with a key already present is replaced, a new key
// is appended.
func MergeMetadata(base, over []MetadataKV) []MetadataKV {
	out := append([]MetadataKV(nil), base...)
	for _, o := range over {
		replaced := false
		for i := range out {
			if out[i].Key == o.Key {
				out[i].Value = o.Value
				replaced = true
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}

func compileStringList(ms []*matcherv3.StringMatcher, path string) ([]*StringMatch, error) {
	var out []*StringMatch
	for i, m := range ms {
		sm, err := compileStringMatch(m, join(path, idx("patterns", i)))
		if err != nil {
			return nil, err
		}
		out = append(out, sm)
	}
	return out, nil
}
