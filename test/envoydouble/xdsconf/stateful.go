package xdsconf

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statefulv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	envelopev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/stateful_session/envelope/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// StatefulSessionFilterType is the typed_config type of envoy.filters.http.stateful_session.
const StatefulSessionFilterType = "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession"

const (
	statefulSessionPerRouteType = "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSessionPerRoute"
	// EnvelopeSessionStateName is the session state factory name Envoy looks the extension up by
	// (Config::Utility::getAndCheckFactoryByName on session_state.name).
	EnvelopeSessionStateName = "envoy.http.stateful_session.envelope"
)

// StatefulSessionFilter is the envoy.filters.http.stateful_session filter of the HCM chain.
type StatefulSessionFilter struct {
	// Name is the filter's name in http_filters: the key of typed_per_filter_config.
	Name string
	// Config is the filter's own configuration, what a route without a per-route config uses.
	Config StatefulSession
	// BeforeExtProc is the filter's place in the chain: before ext_proc it reads (and restores)
	// the request's session header before ext_proc sees the request, and since encoder filters
	// run in reverse it wraps the response's header after ext_proc saw the upstream's value.
	// After ext_proc it is the other way round.
	BeforeExtProc bool
}

// StatefulSession is a compiled StatefulSession. Only the envelope session state is implemented.
type StatefulSession struct {
	// EnvelopeHeader is the envelope session state's header.name, lower-cased as Envoy's
	// LowerCaseString does. "" when session_state is unset: Envoy's EmptySessionStateFactory,
	// the filter then does nothing.
	EnvelopeHeader string
}

// StatefulSessionPerRoute is a compiled StatefulSessionPerRoute: disabled, or a whole
// StatefulSession replacing the filter's (the most specific level wins, nothing is merged).
type StatefulSessionPerRoute struct {
	// Disabled is disabled: the filter does nothing for the request.
	Disabled bool
	// Config is stateful_session, replacing the filter's Config; unused when Disabled.
	Config StatefulSession
}

// CompileStatefulSession checks and compiles the filter's typed_config.
func CompileStatefulSession(name string, a *anypb.Any, path string) (*StatefulSessionFilter, error) {
	var cfg statefulv3.StatefulSession
	if err := unpack(a, &cfg, path); err != nil {
		return nil, err
	}
	s, err := compileStatefulSession(&cfg, path)
	if err != nil {
		return nil, err
	}
	return &StatefulSessionFilter{Name: name, Config: s}, nil
}

func compileStatefulSessionPerRoute(a *anypb.Any, path string) (*StatefulSessionPerRoute, error) {
	var pr statefulv3.StatefulSessionPerRoute
	if err := unpack(a, &pr, path); err != nil {
		return nil, err
	}
	if err := validate(&pr, path); err != nil {
		return nil, err
	}
	if pr.GetDisabled() {
		return &StatefulSessionPerRoute{Disabled: true}, nil
	}
	s, err := compileStatefulSession(pr.GetStatefulSession(), path+".stateful_session")
	if err != nil {
		return nil, err
	}
	return &StatefulSessionPerRoute{Config: s}, nil
}

// compileStatefulSession compiles a StatefulSession. stat_prefix only names statistics; strict
// (and its status code) is refused: the double reproduces the fallback to the load balancer only.
func compileStatefulSession(cfg *statefulv3.StatefulSession, path string) (StatefulSession, error) {
	if err := validate(cfg, path); err != nil {
		return StatefulSession{}, err
	}
	if err := checkFields(cfg, path, "session_state", "stat_prefix"); err != nil {
		return StatefulSession{}, err
	}
	ss := cfg.GetSessionState()
	if ss == nil {
		return StatefulSession{}, nil
	}
	header, err := compileEnvelope(ss, path+".session_state")
	if err != nil {
		return StatefulSession{}, err
	}
	return StatefulSession{EnvelopeHeader: header}, nil
}

// compileEnvelope reads the envelope session state; the cookie and header session states (and any
// other) are refused.
func compileEnvelope(ss *corev3.TypedExtensionConfig, path string) (string, error) {
	if ss.GetName() != EnvelopeSessionStateName {
		return "", fmt.Errorf("%s.name: session state %q not implemented by envoydouble (%s only)", path, ss.GetName(), EnvelopeSessionStateName)
	}
	var env envelopev3.EnvelopeSessionState
	if err := unpack(ss.GetTypedConfig(), &env, path+".typed_config"); err != nil {
		return "", err
	}
	tp := path + ".typed_config"
	if err := validate(&env, tp); err != nil {
		return "", err
	}
	if err := checkFields(&env, tp, "header"); err != nil {
		return "", err
	}
	if err := checkFields(env.GetHeader(), tp+".header", "name"); err != nil {
		return "", err
	}
	return strings.ToLower(env.GetHeader().GetName()), nil
}
