package xdsconf

import (
	"fmt"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// CorsFilterType is the typed_config type of envoy.filters.http.cors.
const CorsFilterType = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"

// corsPolicyType is the per-route config type of the CORS filter.
const corsPolicyType = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"

// CorsFilter is the envoy.filters.http.cors filter of the HCM chain. Its own config (Cors) has no
// fields: every setting is per route (CorsPolicy).
type CorsFilter struct {
	// Name is the filter's name in http_filters: the key of typed_per_filter_config.
	Name string
}

// CorsPolicy is a compiled CorsPolicy. The double implements the fields mcpgate emits; filter_enabled,
// shadow_enabled (runtime fractions) and allow_private_network_access are refused, so an unset
// field means Envoy's default: enabled for every request.
type CorsPolicy struct {
	// AllowOrigins are allow_origin_string_match, tried in order.
	AllowOrigins []*StringMatch
	// AllowMethods, AllowHeaders, ExposeHeaders and MaxAge are the header values as configured
	// ("" = unset: Envoy's getters then look at less specific levels).
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge string
	// AllowCredentials is allow_credentials; nil when unset.
	AllowCredentials *bool
	// ForwardNotMatchingPreflights is forward_not_matching_preflights; nil when unset (Envoy's
	// default, when no level sets it: true, the preflight of an origin not allowed goes down the
	// chain).
	ForwardNotMatchingPreflights *bool
}

// CompileCors checks the filter's typed_config.
func CompileCors(name string, a *anypb.Any, path string) (*CorsFilter, error) {
	var cfg corsv3.Cors
	if err := unpack(a, &cfg, path); err != nil {
		return nil, err
	}
	if err := validate(&cfg, path); err != nil {
		return nil, err
	}
	if err := checkFields(&cfg, path); err != nil {
		return nil, err
	}
	return &CorsFilter{Name: name}, nil
}

func compileCorsPolicy(a *anypb.Any, path string) (*CorsPolicy, error) {
	var p corsv3.CorsPolicy
	if err := unpack(a, &p, path); err != nil {
		return nil, err
	}
	if err := validate(&p, path); err != nil {
		return nil, err
	}
	if err := checkFields(&p, path, "allow_origin_string_match", "allow_methods", "allow_headers",
		"expose_headers", "max_age", "allow_credentials", "forward_not_matching_preflights"); err != nil {
		return nil, err
	}
	out := &CorsPolicy{AllowMethods: p.GetAllowMethods(), AllowHeaders: p.GetAllowHeaders(),
		ExposeHeaders: p.GetExposeHeaders(), MaxAge: p.GetMaxAge()}
	if c := p.GetAllowCredentials(); c != nil {
		v := c.GetValue()
		out.AllowCredentials = &v
	}
	if f := p.GetForwardNotMatchingPreflights(); f != nil {
		v := f.GetValue()
		out.ForwardNotMatchingPreflights = &v
	}
	for i, m := range p.GetAllowOriginStringMatch() {
		sm, err := compileStringMatch(m, fmt.Sprintf("%s.allow_origin_string_match[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out.AllowOrigins = append(out.AllowOrigins, sm)
	}
	return out, nil
}
