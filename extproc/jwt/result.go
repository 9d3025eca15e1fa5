package jwt

import (
	"net/http"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// Status is the outcome of authenticating one request.
type Status uint8

const (
	// Missing: the request carries no bearer token in its Authorization header.
	Missing Status = iota
	// OK: the token verified; Result.Claims holds its payload.
	OK
	// Invalid: a token was present and did not verify; Result.Reason says why.
	Invalid
)

// String returns "missing", "ok" or "invalid", the words of the authn metadata field.
func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Invalid:
		return "invalid"
	}
	return "missing"
}

// Reasons are the short texts of Envoy's jwt_authn (its jwt_verify_lib status strings), so that a
// client sees the same body from mcpgate as from Envoy. They are a fixed set, fit for a metric
// label, and never contain any part of the token.
const (
	ReasonMissing          = "Jwt is missing"
	ReasonBadFormat        = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
	ReasonHeaderBase64     = "Jwt header is an invalid Base64url encoded"
	ReasonHeaderJSON       = "Jwt header is an invalid JSON"
	ReasonHeaderAlg        = "Jwt header [alg] field is required and must be a string"
	ReasonUnsupportedAlg   = "Jwt header [alg] is not supported"
	ReasonHeaderKid        = "Jwt header [kid] field is not a string"
	ReasonPayloadBase64    = "Jwt payload is an invalid Base64url encoded"
	ReasonPayloadJSON      = "Jwt payload is an invalid JSON"
	ReasonIssuerNotString  = "Jwt payload [iss] field is not a string"
	ReasonAudienceType     = "Jwt payload [aud] field is not a string or string list"
	ReasonTimeClaimType    = "Jwt payload [exp], [nbf] or [iat] field is not a number"
	ReasonSignatureBase64  = "Jwt signature is an invalid Base64url encoded"
	ReasonUnknownIssuer    = "Jwt issuer is not configured"
	ReasonFetchFailed      = "Jwks remote fetch is failed"
	ReasonNoMatchingKey    = "Jwks doesn't have key to match kid or alg from Jwt"
	ReasonVerification     = "Jwt verification fails"
	ReasonExpired          = "Jwt is expired"
	ReasonNotYetValid      = "Jwt not yet valid"
	ReasonAudienceRejected = "Audiences in Jwt are not allowed"
	// ReasonMissingExp and ReasonHeaderCrit are mcpgate's own: Envoy accepts a token without exp
	// unless the provider sets require_expiration, and ignores crit.
	ReasonMissingExp = "Jwt payload [exp] field is required"
	ReasonHeaderCrit = "Jwt header [crit] names extensions that are not understood"
)

// Result is what Authenticate found. Claims is shared with the token cache: read it, never
// modify it.
type Result struct {
	// Status is the outcome: Missing, OK or Invalid.
	Status Status
	// Claims is the verified payload (numbers are float64, as encoding/json decodes them); nil
	// unless Status is OK.
	Claims map[string]any
	// Subject is the sub claim when it is a string.
	Subject string
	// Issuer is the iss claim of a verified token.
	Issuer string
	// Reason is one of the Reason constants; "" when Status is OK.
	Reason string
}

// Header is one HTTP response header; Name is lower case.
type Header struct {
	// Name is the header's name in lower case ("www-authenticate"); Value its value.
	Name, Value string
}

// Answer is the HTTP response that refuses a request, for ext_proc's ImmediateResponse.
type Answer struct {
	// Status is 401, or 403 when the token's audiences are not allowed (as Envoy answers).
	Status int
	// Headers are www-authenticate and content-type.
	Headers []Header
	// Body is the reason as text/plain.
	Body string
}

// Realm is the realm of the WWW-Authenticate challenge.
const Realm = "mcpgate"

// Decide applies the policy's mode to a Result: Strict refuses Missing and Invalid, Optional
// refuses Invalid, Permissive refuses nothing. When reject is true, answer is the refusal:
// 401 (403 for an audience that is not allowed) with WWW-Authenticate `Bearer realm="mcpgate"`,
// plus `, error="invalid_token"` when a token was present, and the reason as a text/plain body.
// An unknown mode is treated as Strict.
func (a *Authenticator) Decide(r Result) (answer Answer, reject bool) {
	switch r.Status {
	case OK:
		return Answer{}, false
	case Missing:
		if a.mode == policyv1.JWTAuthentication_OPTIONAL || a.mode == policyv1.JWTAuthentication_PERMISSIVE {
			return Answer{}, false
		}
	default:
		if a.mode == policyv1.JWTAuthentication_PERMISSIVE {
			return Answer{}, false
		}
	}
	challenge := `Bearer realm="` + Realm + `"`
	status := http.StatusUnauthorized
	reason := r.Reason
	if r.Status == Missing {
		reason = ReasonMissing
	} else {
		challenge += `, error="invalid_token"`
		if reason == ReasonAudienceRejected {
			status = http.StatusForbidden
		}
		if reason == "" {
			reason = ReasonVerification
		}
	}
	return Answer{
		Status: status,
		Headers: []Header{
			{Name: "www-authenticate", Value: challenge},
			{Name: "content-type", Value: "text/plain"},
		},
		Body: reason,
	}, true
}
