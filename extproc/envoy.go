package extproc

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// header is one HTTP header as Envoy sent it.
type header struct{ name, value string }

// headerList is the headers of a request or response, in Envoy's order. Envoy sends lower-case
// names, pseudo-headers included, and the value in raw_value (value only from old versions).
type headerList []header

func readHeaders(hm *corev3.HeaderMap) headerList {
	hs := hm.GetHeaders()
	out := make(headerList, 0, len(hs))
	for _, hv := range hs {
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		out = append(out, header{name: hv.GetKey(), value: v})
	}
	return out
}

// first returns the first value of name, "" when absent.
func (h headerList) first(name string) string {
	for i := range h {
		if h[i].name == name {
			return h[i].value
		}
	}
	return ""
}

// Get implements authz.Headers: a repeated header is joined with ",". Pseudo-headers are not
// request headers for the rules (they are request.method, request.path, request.host).
func (h headerList) Get(name string) (string, bool) {
	if strings.HasPrefix(name, ":") {
		return "", false
	}
	v, found := "", false
	for i := range h {
		if h[i].name == name {
			if found {
				v += "," + h[i].value
			} else {
				v, found = h[i].value, true
			}
		}
	}
	return v, found
}

// Range implements authz.Headers.
func (h headerList) Range(f func(name, value string) bool) {
	for i := range h {
		if h.skip(i) {
			continue
		}
		v, _ := h.Get(h[i].name)
		if !f(h[i].name, v) {
			return
		}
	}
}

// Len implements authz.Headers.
func (h headerList) Len() int {
	n := 0
	for i := range h {
		if !h.skip(i) {
			n++
		}
	}
	return n
}

// skip reports whether header i is a pseudo-header or repeats an earlier name.
func (h headerList) skip(i int) bool {
	if strings.HasPrefix(h[i].name, ":") {
		return true
	}
	for j := 0; j < i; j++ {
		if h[j].name == h[i].name {
			return true
		}
	}
	return false
}

// carrier reads the W3C trace context from request headers (propagation.TextMapCarrier).
type carrier headerList

func (c carrier) Get(key string) string { return headerList(c).first(strings.ToLower(key)) }
func (c carrier) Set(string, string)    {}
func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for _, h := range c {
		keys = append(keys, h.name)
	}
	return keys
}

// mediaType returns the lower-case media type of a content-type value, without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// sourceAddress reads the source.address request attribute.
func sourceAddress(attrs map[string]*structpb.Struct) string {
	return attrs["envoy.filters.http.ext_proc"].GetFields()["source.address"].GetStringValue()
}

// setHeader is a header mutation that overwrites (Envoy honours only the deprecated append flag,
// whose default is overwrite) and carries the value in raw_value, as Envoy requires.
func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, RawValue: []byte(value)}}
}

// metadata collects the fields of the "mcpgate" dynamic metadata namespace for one reply.
type metadata map[string]*structpb.Value

func (m *metadata) str(name, value string) {
	if value == "" {
		return
	}
	if *m == nil {
		*m = make(metadata, 8)
	}
	(*m)[name] = structpb.NewStringValue(value)
}

func (m *metadata) num(name string, value int) {
	if *m == nil {
		*m = make(metadata, 8)
	}
	(*m)[name] = structpb.NewNumberValue(float64(value))
}

// build returns the dynamic_metadata of a reply; nil when there are no fields.
func (m metadata) build() *structpb.Struct {
	if len(m) == 0 {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		metadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: m}),
	}}
}

// metadataNamespace is the dynamic metadata namespace ext_proc writes (listed in the filter's
// metadata_options.receiving_namespaces).
const metadataNamespace = "mcpgate"

// The replies. Each answers exactly the message kind it names.

func headersReply(request bool, mut *extprocv3.HeaderMutation, md metadata) *extprocv3.ProcessingResponse {
	hr := &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}}
	r := &extprocv3.ProcessingResponse{DynamicMetadata: md.build()}
	if request {
		r.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: hr}
	} else {
		r.Response = &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}
	}
	return r
}

// bodyReply continues the body; with replace, the body (or, in STREAMED mode, this chunk) becomes
// body. setLength also sets content-length, which Envoy requires to match a replaced buffered
// body.
func bodyReply(request bool, body []byte, replace, setLength bool, md metadata) *extprocv3.ProcessingResponse {
	cr := &extprocv3.CommonResponse{}
	if replace {
		if len(body) == 0 {
			cr.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}
		} else {
			cr.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}
		}
		if setLength {
			cr.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader("content-length", strconv.Itoa(len(body))),
			}}
		}
	}
	br := &extprocv3.BodyResponse{Response: cr}
	r := &extprocv3.ProcessingResponse{DynamicMetadata: md.build()}
	if request {
		r.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}
	} else {
		r.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}
	}
	return r
}

func trailersReply(request bool) *extprocv3.ProcessingResponse {
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
}

// answer is an HTTP response ext_proc gives instead of the upstream's.
type answer struct {
	status      int
	contentType string
	headers     []header
	body        []byte
	// details becomes Envoy's %RESPONSE_CODE_DETAILS%.
	details string
}

func immediateReply(a answer, md metadata) *extprocv3.ProcessingResponse {
	mut := &extprocv3.HeaderMutation{}
	if a.contentType != "" {
		mut.SetHeaders = append(mut.SetHeaders, setHeader("content-type", a.contentType))
	}
	for _, h := range a.headers {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(h.name, h.value))
	}
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(a.status)},
			Headers: mut,
			Body:    a.body,
			Details: a.details,
		}},
		DynamicMetadata: md.build(),
	}
}

// responseBodyMode is the mode_override of a response whose content type is ct: server-sent
// events are streamed chunk by chunk, JSON stays buffered (nil: no override), anything else is
// not sent to ext_proc at all. The request body stays BUFFERED (body modes are applied literally,
// and a request body still in flight must still be read).
func responseBodyMode(ct string) *extprocfilterv3.ProcessingMode {
	var mode extprocfilterv3.ProcessingMode_BodySendMode
	switch mediaType(ct) {
	case "application/json":
		return nil
	case "text/event-stream":
		mode = extprocfilterv3.ProcessingMode_STREAMED
	default:
		mode = extprocfilterv3.ProcessingMode_NONE
	}
	return &extprocfilterv3.ProcessingMode{
		RequestBodyMode:     extprocfilterv3.ProcessingMode_BUFFERED,
		ResponseBodyMode:    mode,
		RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
}
