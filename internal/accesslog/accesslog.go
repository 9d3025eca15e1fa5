// Package accesslog builds the JSON access log every mcpgate listener writes to stdout: the
// translator's Gateway listeners and the bootstrap's mux upstream listener, so that one line shape
// covers both hops of a multiplexed request.
package accesslog

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	reqwithoutqueryv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/req_without_query/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/contract"
)

const (
	stdoutLoggerName         = "envoy.access_loggers.stdout"
	reqWithoutQueryFormatter = "envoy.formatter.req_without_query"
)

// Fields are the request fields of the JSON access log; the mcpgate fields (contract.Fields)
// follow under "mcpgate". path is the path the request was routed by (after normalization), or
// the one it was forwarded with when its route rewrote it; original_path is the path before the
// rewrite (null when the route did not rewrite). Both are logged without their query string (the
// formatter extension envoy.formatter.req_without_query): clients put tokens there
// (`?access_token=`, `?token=`, API keys), and a legacy SSE session id, which the mcpgate fields
// hold, is not a path.
func Fields() [][2]string {
	return [][2]string{
		{"start_time", "%START_TIME%"},
		{"method", "%REQ(:METHOD)%"},
		{"path", "%REQ_WITHOUT_QUERY(:PATH)%"},
		{"original_path", "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH)%"},
		{"authority", "%REQ(:AUTHORITY)%"},
		{"response_code", "%RESPONSE_CODE%"},
		{"response_flags", "%RESPONSE_FLAGS%"},
		{"duration", "%DURATION%"},
		{"upstream_host", "%UPSTREAM_HOST%"},
		{"route_name", "%ROUTE_NAME%"},
		{"request_id", "%REQ(X-REQUEST-ID)%"},
	}
}

// Config is the stdout logger's config: Fields, then the mcpgate fields read with
// %METADATA(SOURCE:mcpgate:FIELD)% (metadataOperator).
func Config() *streamv3.StdoutAccessLog {
	fields := map[string]*structpb.Value{}
	for _, f := range Fields() {
		fields[f[0]] = structpb.NewStringValue(f[1])
	}
	mcp := map[string]*structpb.Value{}
	for _, f := range contract.Fields() {
		mcp[f.Name] = structpb.NewStringValue(metadataOperator(f))
	}
	fields[contract.MetadataNamespace] = structpb.NewStructValue(&structpb.Struct{Fields: mcp})
	return &streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{
		LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: fields}},
			Formatters: []*corev3.TypedExtensionConfig{{
				Name: reqWithoutQueryFormatter, TypedConfig: mustAny(&reqwithoutqueryv3.ReqWithoutQuery{})}},
		},
	}}
}

// metadataOperator is the command operator that reads f: %METADATA(SOURCE:mcpgate:FIELD)%,
// or for a field with a Fallback the first of SOURCE's and FALLBACK's that has it (null, empty
// or missing: the next), with %COALESCE% (Envoy 1.37+).
func metadataOperator(f contract.Field) string {
	param := func(src contract.MetadataSource) string {
		return string(src) + ":" + contract.MetadataNamespace + ":" + f.Name
	}
	if f.Fallback == "" {
		return "%METADATA(" + param(f.Source) + ")%"
	}
	return `%COALESCE({"operators":[{"command":"METADATA","param":"` + param(f.Source) +
		`"},{"command":"METADATA","param":"` + param(f.Fallback) + `"}]})%`
}

// Stdout is the access log of an HTTP connection manager: Config written to stdout.
func Stdout() []*accesslogv3.AccessLog {
	return []*accesslogv3.AccessLog{{
		Name:       stdoutLoggerName,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(Config())},
	}}
}

// mustAny wraps a message built here, deterministically (the JSON format's Struct has map
// entries): the same configuration gives the same bytes, and xDS pushes nothing unchanged.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic("accesslog: marshal " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return a
}
