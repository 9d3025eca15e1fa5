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
// shadow_enabled (runtime fractions), allow_private_network_access and
// forward_not_matching_preflights are refused, so an unset field means Envoy's default: enabled
// for every request, preflights of origins not allowed forwarded down the chain.
type CorsPolicy struct {
	// AllowOrigins are allow_origin_string_match, tried in order.
	AllowOrigins []*StringMatch
	// AllowMethods, AllowHeaders, ExposeHeaders and MaxAge are the header values as configured
	// ("" = unset: Envoy's getters then look at less specific levels).
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge string
	// AllowCredentials is allow_credentials; nil when unset.
	AllowCredentials *bool
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
		"expose_headers", "max_age", "allow_credentials"); err != nil {
		return nil, err
	}
	out := &CorsPolicy{AllowMethods: p.GetAllowMethods(), AllowHeaders: p.GetAllowHeaders(),
		ExposeHeaders: p.GetExposeHeaders(), MaxAge: p.GetMaxAge()}
	if c := p.GetAllowCredentials(); c != nil {
		v := c.GetValue()
		out.AllowCredentials = &v
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
