package extproc

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
)

// header is one HTTP header as Envoy sent it.
type header struct{ name, value string }

// headerList is the headers of a request or response, in Envoy's order. Envoy sends lower-case
// names, pseudo-headers included, and the value in raw_value (value only from old versions).
type headerList []header

// readHeaders reads hm into buf's storage (buf[:0], grown when they do not fit).
func readHeaders(buf headerList, hm *corev3.HeaderMap) headerList {
	hs := hm.GetHeaders()
	out := slices.Grow(buf[:0], len(hs))
	for _, hv := range hs {
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			// The message is this stream's own, decoded for it and never modified: its bytes
			// can back the string without a copy.
			v = unsafe.String(&raw[0], len(raw))
		}
		out = append(out, header{name: hv.GetKey(), value: v})
	}
	return out
}

// size returns the bytes of the names and values.
func (h headerList) size() int {
	n := 0
	for i := range h {
		n += len(h[i].name) + len(h[i].value)
	}
	return n
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

// only returns the first value of name and how many times name occurs.
func (h headerList) only(name string) (first string, n int) {
	for i := range h {
		if h[i].name == name {
			if n == 0 {
				first = h[i].value
			}
			n++
		}
	}
	return first, n
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

// encoded reports whether a content-encoding value names an encoding other than identity.
func encoded(ce string) bool {
	ce = strings.TrimSpace(ce)
	return ce != "" && !strings.EqualFold(ce, "identity")
}

// sourceAddress reads the source.address request attribute.
func sourceAddress(attrs map[string]*structpb.Struct) string {
	return attrs[contract.ExtProcAttributes].GetFields()[contract.AttrSourceAddress].GetStringValue()
}

// peerCertificate reads the client certificate attributes, which Envoy sends only where the
// translator asks for them: on the filter chains that verify client certificates
// (contract.PeerCertificateAttributes). A certificate is its digest, which Envoy sends for every
// presented certificate: without one, the rest (a TLS connection's subject attribute is "" even
// without a certificate) is no certificate.
func peerCertificate(attrs map[string]*structpb.Struct) authz.PeerCertificate {
	f := attrs[contract.ExtProcAttributes].GetFields()
	p := authz.PeerCertificate{SHA256: f[contract.AttrPeerSHA256].GetStringValue()}
	if p.SHA256 == "" {
		return authz.PeerCertificate{}
	}
	p.Subject = f[contract.AttrPeerSubject].GetStringValue()
	p.URISAN = f[contract.AttrPeerURISAN].GetStringValue()
	p.DNSSAN = f[contract.AttrPeerDNSSAN].GetStringValue()
	return p
}

// setHeader is a header mutation that overwrites (Envoy honours only the deprecated append flag,
// whose default is overwrite) and carries the value in raw_value, as Envoy requires.
func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, RawValue: []byte(value)}}
}

// metadata collects the fields of the "mcpgate" dynamic metadata namespace for one reply. It is
// encoded by hand (see attach): building structpb maps and marshalling them by reflection was the
// largest cost of a reply.
type metadata struct {
	fields []mdField
	// size is how many fields the reply is expected to carry, the capacity of the first
	// allocation (0: contractFields, as a request's reply may carry).
	size int
}

// contractFields is the number of the fields ext_proc writes (contract.FromExtProc, as the
// Source or Fallback of a field): the most a reply carries.
const contractFields = 13

// answerMetadata is the metadata of a response's reply: the outcome and, for an error, its code.
func answerMetadata() metadata { return metadata{size: 2} }

// in returns m with its fields in buf's storage (buf[:0], grown when they do not fit).
func (m metadata) in(buf []mdField) metadata {
	m.fields = append(buf[:0], m.fields...)
	return m
}

type mdField struct {
	name, str string
	num       float64
	isNum     bool
}

func (m *metadata) put(f mdField) {
	for i := range m.fields {
		if m.fields[i].name == f.name {
			m.fields[i] = f
			return
		}
	}
	if m.fields == nil {
		size := m.size
		if size == 0 {
			size = contractFields
		}
		m.fields = make([]mdField, 0, size)
	}
	m.fields = append(m.fields, f)
}

// str sets name to value (nothing when empty). Invalid UTF-8, which clients can put in the
// method, tool, arguments and id they send, becomes U+FFFD (telemetry.ValidUTF8): a protobuf
// string must be UTF-8, and Envoy would refuse the whole reply otherwise.
func (m *metadata) str(name, value string) {
	if value != "" {
		m.put(mdField{name: name, str: telemetry.ValidUTF8(value)})
	}
}

// bytes is str of value's text, without a copy: value's bytes (a request body's, or a rendering of
// them) do not change, and the reply's encoding (attach), which reads them, is made before the
// message they came from is released.
func (m *metadata) bytes(name string, value []byte) {
	if len(value) > 0 {
		m.str(name, unsafe.String(&value[0], len(value)))
	}
}

// replace sets name to value, or removes it when value is empty: a later decision replaces an
// earlier one.
func (m *metadata) replace(name, value string) {
	if value != "" {
		m.str(name, value)
		return
	}
	m.fields = slices.DeleteFunc(m.fields, func(f mdField) bool { return f.name == name })
}

func (m *metadata) num(name string, value int) {
	m.put(mdField{name: name, num: float64(value), isNum: true})
}

// Field numbers of the encoding (envoy.service.ext_proc.v3.ProcessingResponse and
// google.protobuf.Struct/Value).
const (
	fieldDynamicMetadata = 8 // ProcessingResponse.dynamic_metadata
	fieldStructFields    = 1 // Struct.fields (map entries)
	fieldEntryKey        = 1
	fieldEntryValue      = 2
	fieldValueNumber     = 2 // Value.number_value
	fieldValueString     = 3 // Value.string_value
	fieldValueStruct     = 5 // Value.struct_value
)

// attach sets the metadata as r's dynamic_metadata and returns r. The field is encoded by hand and
// carried as r's unknown fields, which every marshaller writes verbatim; a receiver (Envoy) reads
// it as the dynamic_metadata field it is.
func (m metadata) attach(r *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
	m.attachIn(r, nil)
	return r
}

// attachIn is attach with the encoding in buf's storage (nil: a new one); it returns the
// encoding, whose storage can be reused once r is sent.
func (m metadata) attachIn(r *extprocv3.ProcessingResponse, buf []byte) []byte {
	if len(m.fields) == 0 {
		return buf
	}
	valueSize := func(f *mdField) int {
		if f.isNum {
			return protowire.SizeTag(fieldValueNumber) + protowire.SizeFixed64()
		}
		return protowire.SizeTag(fieldValueString) + protowire.SizeBytes(len(f.str))
	}
	entrySize := func(key string, value int) int {
		return protowire.SizeTag(fieldEntryKey) + protowire.SizeBytes(len(key)) +
			protowire.SizeTag(fieldEntryValue) + protowire.SizeBytes(value)
	}
	// The value sizes, computed once for the sizes and the encoding (on the stack for the fields a
	// reply carries).
	var sizesBuf [2 * contractFields]int
	sizes := sizesBuf[:0]
	inner := 0
	for i := range m.fields {
		vs := valueSize(&m.fields[i])
		sizes = append(sizes, vs)
		inner += protowire.SizeTag(fieldStructFields) + protowire.SizeBytes(entrySize(m.fields[i].name, vs))
	}
	outerValue := protowire.SizeTag(fieldValueStruct) + protowire.SizeBytes(inner)
	outerEntry := entrySize(contract.MetadataNamespace, outerValue)
	outer := protowire.SizeTag(fieldStructFields) + protowire.SizeBytes(outerEntry)

	b := slices.Grow(buf[:0], protowire.SizeTag(fieldDynamicMetadata)+protowire.SizeBytes(outer))
	b = protowire.AppendTag(b, fieldDynamicMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(outer))
	b = protowire.AppendTag(b, fieldStructFields, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(outerEntry))
	b = protowire.AppendTag(b, fieldEntryKey, protowire.BytesType)
	b = protowire.AppendString(b, contract.MetadataNamespace)
	b = protowire.AppendTag(b, fieldEntryValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(outerValue))
	b = protowire.AppendTag(b, fieldValueStruct, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	for i := range m.fields {
		f, vs := &m.fields[i], sizes[i]
		b = protowire.AppendTag(b, fieldStructFields, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entrySize(f.name, vs)))
		b = protowire.AppendTag(b, fieldEntryKey, protowire.BytesType)
		b = protowire.AppendString(b, f.name)
		b = protowire.AppendTag(b, fieldEntryValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(vs))
		if f.isNum {
			b = protowire.AppendTag(b, fieldValueNumber, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(f.num))
		} else {
			b = protowire.AppendTag(b, fieldValueString, protowire.BytesType)
			b = protowire.AppendString(b, f.str)
		}
	}
	r.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
	return b
}

// The replies. Each answers exactly the message kind it names.

// replies holds the objects of a stream's headers and body replies. A stream sends one reply at
// a time and gRPC encodes it before Send returns, so the objects are reused from one reply to the
// next (and, the stream recycled, from one stream to the next) instead of allocated for each.
type replies struct {
	// raw is the storage of the last reply's metadata encoding (metadata.attach).
	raw         []byte
	resp        extprocv3.ProcessingResponse
	reqHeaders  extprocv3.ProcessingResponse_RequestHeaders
	respHeaders extprocv3.ProcessingResponse_ResponseHeaders
	reqBody     extprocv3.ProcessingResponse_RequestBody
	respBody    extprocv3.ProcessingResponse_ResponseBody
	headers     extprocv3.HeadersResponse
	body        extprocv3.BodyResponse
	common      extprocv3.CommonResponse
	// mode is the response headers' reply's mode_override (responseBodyMode); mut and removed a
	// headers' reply's header mutation (mutation).
	mode    extprocfilterv3.ProcessingMode
	mut     extprocv3.HeaderMutation
	removed [3]string
	// set, setOpts and setVals are the storage of mut's first set headers (setHeaders).
	set     [3]*corev3.HeaderValueOption
	setOpts [3]corev3.HeaderValueOption
	setVals [3]corev3.HeaderValue
}

// removeHeaders adds the removal of name to the request headers' reply's header mutation, which
// it returns (made on first use).
func (rs *replies) removeHeaders(mut *extprocv3.HeaderMutation, name string) *extprocv3.HeaderMutation {
	mut = rs.mutation(mut)
	mut.RemoveHeaders = append(mut.RemoveHeaders, name)
	return mut
}

// setHeaders adds setting name to value to the headers' reply's header mutation, which it returns
// (made on first use).
func (rs *replies) setHeaders(mut *extprocv3.HeaderMutation, name, value string) *extprocv3.HeaderMutation {
	mut = rs.mutation(mut)
	if i := len(mut.SetHeaders); mut == &rs.mut && i < len(rs.set) {
		// The reply is marshalled before the stream's next message, and value is never
		// modified: its bytes can back RawValue without a copy.
		rs.setVals[i] = corev3.HeaderValue{Key: name, RawValue: unsafe.Slice(unsafe.StringData(value), len(value))}
		rs.setOpts[i] = corev3.HeaderValueOption{Header: &rs.setVals[i]}
		mut.SetHeaders = append(mut.SetHeaders, &rs.setOpts[i])
		return mut
	}
	mut.SetHeaders = append(mut.SetHeaders, setHeader(name, value))
	return mut
}

// mutation returns mut, or when nil the stream's header mutation, emptied.
func (rs *replies) mutation(mut *extprocv3.HeaderMutation) *extprocv3.HeaderMutation {
	if mut == nil {
		mut = &rs.mut
		mut.RemoveHeaders, mut.SetHeaders = rs.removed[:0], rs.set[:0]
	}
	return mut
}

// headersReply continues the headers with the mutation mut (nil: none).
func (rs *replies) headersReply(request bool, mut *extprocv3.HeaderMutation, md metadata) *extprocv3.ProcessingResponse {
	rs.common = extprocv3.CommonResponse{HeaderMutation: mut}
	rs.headers = extprocv3.HeadersResponse{Response: &rs.common}
	rs.resp = extprocv3.ProcessingResponse{}
	if request {
		rs.reqHeaders.RequestHeaders = &rs.headers
		rs.resp.Response = &rs.reqHeaders
	} else {
		rs.respHeaders.ResponseHeaders = &rs.headers
		rs.resp.Response = &rs.respHeaders
	}
	rs.raw = md.attachIn(&rs.resp, rs.raw)
	return &rs.resp
}

// bodyReply continues the body; with replace, the body (or, in STREAMED mode, this chunk) becomes
// body. setLength also sets content-length, which Envoy requires to match a replaced buffered
// body.
func (rs *replies) bodyReply(request bool, body []byte, replace, setLength bool, md metadata) *extprocv3.ProcessingResponse {
	rs.common = extprocv3.CommonResponse{}
	if replace {
		if len(body) == 0 {
			rs.common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}
		} else {
			rs.common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}
		}
		if setLength {
			rs.common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader("content-length", strconv.Itoa(len(body))),
			}}
		}
	}
	rs.body = extprocv3.BodyResponse{Response: &rs.common}
	rs.resp = extprocv3.ProcessingResponse{}
	if request {
		rs.reqBody.RequestBody = &rs.body
		rs.resp.Response = &rs.reqBody
	} else {
		rs.respBody.ResponseBody = &rs.body
		rs.resp.Response = &rs.respBody
	}
	rs.raw = md.attachIn(&rs.resp, rs.raw)
	return &rs.resp
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
	return md.attach(&extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(a.status)},
			Headers: mut,
			Body:    a.body,
			Details: a.details,
		}},
	})
}

// responseBodyMode sets pm to the mode_override of a response whose media type is mt, and returns
// pm: server-sent
// events are streamed chunk by chunk, JSON is buffered (the route says NONE until this override, so
// that an answer arriving before it waits instead of overflowing Envoy's buffer); anything else,
// and any body ext_proc cannot read (unreadable: a content encoding, or a length over the body
// limit), is buffered when read says the answer must be read (to be replaced), else not sent to
// ext_proc at all. A body to buffer whose length is not announced (sized false: no
// content-length, as a chunked answer has) is BUFFERED_PARTIAL: Envoy then sends what it holds at
// its buffer limit (end_of_stream false) and lets the rest pass, where BUFFERED would overflow its
// buffer and answer 500; a body that fits comes whole, as in BUFFERED. The request body stays
// BUFFERED (body modes are applied literally, and a request body still in flight must still be
// read). The response header mode is SEND, as the route's: Envoy fills a DEFAULT one from the
// filter-level mode (SKIP), and BUFFERED with headers SKIP ignores the content-length a replaced
// body's reply sets while the upstream's stays, so the reply fails (500, "mismatch between
// content length and the length of the mutated body").
func responseBodyMode(pm *extprocfilterv3.ProcessingMode, mt string, unreadable, read, sized bool) *extprocfilterv3.ProcessingMode {
	var mode extprocfilterv3.ProcessingMode_BodySendMode
	switch {
	case read && (unreadable || mt != "text/event-stream"):
		mode = extprocfilterv3.ProcessingMode_BUFFERED
	case unreadable:
		mode = extprocfilterv3.ProcessingMode_NONE
	case mt == "text/event-stream":
		mode = extprocfilterv3.ProcessingMode_STREAMED
	case mt == "application/json":
		mode = extprocfilterv3.ProcessingMode_BUFFERED
	default:
		mode = extprocfilterv3.ProcessingMode_NONE
	}
	if mode == extprocfilterv3.ProcessingMode_BUFFERED && !sized {
		mode = extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL
	}
	*pm = extprocfilterv3.ProcessingMode{
		ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
		RequestBodyMode:     extprocfilterv3.ProcessingMode_BUFFERED,
		ResponseBodyMode:    mode,
		RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
	return pm
}
