package translator

import (
	"slices"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// Kinds of the objects the translator reports on.
const (
	KindGatewayClass                 = "GatewayClass"
	KindGateway                      = "Gateway"
	KindHTTPRoute                    = "HTTPRoute"
	KindAgentgatewayBackend          = "AgentgatewayBackend"
	KindAgentgatewayPolicy           = "AgentgatewayPolicy"
	KindEnterpriseAgentgatewayPolicy = "EnterpriseAgentgatewayPolicy"
	KindService                      = "Service"
	KindSecret                       = "Secret"
)

// ObjectKey names one object: its kind, namespace (empty for cluster-scoped kinds) and name.
type ObjectKey struct {
	// Kind is one of the Kind constants; Namespace is "" for cluster-scoped kinds; Name is
	// metadata.name.
	Kind, Namespace, Name string
}

// String renders the key as "Kind ns/name" (or "Kind name" for cluster-scoped objects).
func (k ObjectKey) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// FieldError is one refusal: the object, the field (a path such as
// spec.rules[0].backendRefs[0]; empty for the whole object) and why.
type FieldError struct {
	// Kind, Namespace and Name identify the object as in ObjectKey; Field is the path of the
	// refused field ("" for the whole object); Message says why it is refused.
	Kind, Namespace, Name, Field, Message string
}

// Object returns the key of the object the error is about.
func (e FieldError) Object() ObjectKey {
	return ObjectKey{Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
}

// Error renders the error as "Kind ns/name: field: message".
func (e FieldError) Error() string {
	s := e.Object().String()
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Message
}

// Status is the status of every input object the translator owns. Conditions carry the
// object's metadata.generation as observedGeneration and no lastTransitionTime: whoever writes
// status back keeps the time of a condition whose status did not change.
type Status struct {
	// GatewayClasses holds the classes whose controllerName is ours, by name.
	GatewayClasses map[string]*gwv1.GatewayClassStatus
	// Gateways holds the served Gateways.
	Gateways map[types.NamespacedName]*gwv1.GatewayStatus
	// HTTPRoutes holds, per route, the parent statuses of the parents this controller serves.
	HTTPRoutes map[types.NamespacedName]*gwv1.HTTPRouteStatus
	// Backends holds every AgentgatewayBackend.
	Backends map[types.NamespacedName]*v1alpha1.AgentgatewayBackendStatus
	// Policies holds both policy kinds, keyed by kind, namespace and name.
	Policies map[ObjectKey]*gwv1.PolicyStatus

	problems fieldErrors
	warnings fieldErrors
}

// fieldErrors collects refusals (or warnings). A stage that works on several goroutines
// (forEach) keeps each object's with the object and adds them to the Status in input order
// (Status.add).
type fieldErrors []FieldError

func (e *fieldErrors) add(kind, ns, name, field, msg string) {
	*e = append(*e, FieldError{Kind: kind, Namespace: ns, Name: name, Field: field, Message: msg})
}

// unsupported is the refusal of v, the value of a field whose CRD schema lists values (an enum,
// +kubebuilder:validation:Enum in api/v1alpha1), in the API server's words: `Unsupported value:
// "sse": supported values: "SSE", "StreamableHTTP"`. It is "" when v is one of values
// (case-sensitive, as the API server compares) or empty (the field omitted: its default). Objects
// read from files (run -f, translate -f) meet no API server, so the translator refuses for it.
func unsupported[T ~string](v T, values ...T) string {
	if v == "" || slices.Contains(values, v) {
		return ""
	}
	return field.NotSupported(nil, string(v), values).ErrorBody()
}

func newStatus(in *Resources) Status {
	return Status{
		GatewayClasses: map[string]*gwv1.GatewayClassStatus{},
		Gateways:       make(map[types.NamespacedName]*gwv1.GatewayStatus, len(in.Gateways)),
		HTTPRoutes:     make(map[types.NamespacedName]*gwv1.HTTPRouteStatus, len(in.HTTPRoutes)),
		Backends:       make(map[types.NamespacedName]*v1alpha1.AgentgatewayBackendStatus, len(in.Backends)),
		Policies:       make(map[ObjectKey]*gwv1.PolicyStatus, len(in.Policies)),
	}
}

// Problems lists every refusal, sorted by object, field and message, without repeats.
func (s *Status) Problems() []FieldError { return sortedFieldErrors(s.problems) }

// Warnings lists what was accepted but is not applied as written (an MCP backend's targets after
// the first), sorted by object, field and message, without repeats. Their objects' conditions say
// it too.
func (s *Status) Warnings() []FieldError { return sortedFieldErrors(s.warnings) }

func sortedFieldErrors(in []FieldError) []FieldError {
	out := make([]FieldError, len(in))
	copy(out, in)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Message < b.Message
	})
	n := 0
	for i, e := range out {
		if i > 0 && e == out[n-1] {
			continue
		}
		out[n] = e
		n++
	}
	return out[:n]
}

func (s *Status) refuse(kind, ns, name, field, msg string) {
	s.problems.add(kind, ns, name, field, msg)
}

// add adds refusals collected apart from the Status.
func (s *Status) add(p fieldErrors) {
	s.problems = append(s.problems, p...)
}

// ObjectStatus is the status of one object, for printing.
type ObjectStatus struct {
	// Kind is the object's kind, one of the Kind constants.
	Kind string `json:"kind"`
	// Namespace is the object's namespace, "" for a GatewayClass.
	Namespace string `json:"namespace,omitempty"`
	// Name is the object's metadata.name.
	Name string `json:"name"`
	// Status is the object's status as held in Status (e.g. *gwv1.GatewayStatus).
	Status any `json:"status"`
}

// Objects lists every object's status, sorted by kind (classes, gateways, routes, backends,
// policies), namespace and name.
func (s *Status) Objects() []ObjectStatus {
	var out []ObjectStatus
	for name, st := range s.GatewayClasses {
		out = append(out, ObjectStatus{Kind: KindGatewayClass, Name: name, Status: st})
	}
	for nn, st := range s.Gateways {
		out = append(out, ObjectStatus{Kind: KindGateway, Namespace: nn.Namespace, Name: nn.Name, Status: st})
	}
	for nn, st := range s.HTTPRoutes {
		out = append(out, ObjectStatus{Kind: KindHTTPRoute, Namespace: nn.Namespace, Name: nn.Name, Status: st})
	}
	for nn, st := range s.Backends {
		out = append(out, ObjectStatus{Kind: KindAgentgatewayBackend, Namespace: nn.Namespace, Name: nn.Name, Status: st})
	}
	for k, st := range s.Policies {
		out = append(out, ObjectStatus{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Status: st})
	}
	rank := map[string]int{KindGatewayClass: 0, KindGateway: 1, KindHTTPRoute: 2, KindAgentgatewayBackend: 3}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		ra, oka := rank[a.Kind]
		rb, okb := rank[b.Kind]
		if !oka {
			ra = 4
		}
		if !okb {
			rb = 4
		}
		if ra != rb {
			return ra < rb
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// condition builds a condition without a transition time (see Status).
func condition(typ string, ok bool, reason, msg string, generation int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: generation}
}
