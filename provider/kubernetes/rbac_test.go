package kubernetes_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// auditPolicy makes the test API server log the metadata of every request, so that the
// requests the controller makes as its ServiceAccount can be compared with what deploy/ grants.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
`

// permission is one verb on one resource (with its subresource, as "gateways/status").
type permission struct{ group, resource, verb string }

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%s %s/%s", p.verb, g, p.resource)
}

// grantedToController returns the permissions of the ClusterRole and Role in rbacYAML.
func grantedToController(rbacYAML []byte) (map[permission]bool, error) {
	granted := map[permission]bool{}
	for i, doc := range bytes.Split(rbacYAML, []byte("\n---\n")) {
		var role struct {
			Kind  string              `json:"kind"`
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		if err := yaml.Unmarshal(doc, &role); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if role.Kind != "ClusterRole" && role.Kind != "Role" {
			continue
		}
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						granted[permission{g, res, v}] = true
					}
				}
			}
		}
	}
	return granted, nil
}

// auditEvent is the part of an audit log event the tests read.
type auditEvent struct {
	Verb             string `json:"verb"`
	RequestURI       string `json:"requestURI"`
	UserAgent        string `json:"userAgent"`
	User             struct{ Username string }
	ImpersonatedUser *struct{ Username string }
	ObjectRef        *struct {
		APIGroup, Resource, Subresource, Namespace, Name string
	}
	ResponseStatus *struct{ Code int }
	// Annotations hold the authorizer's decision ("authorization.k8s.io/decision": allow or
	// forbid), which tells an RBAC refusal from an admission one (both answer 403).
	Annotations map[string]string `json:"annotations"`
}

// eachAuditEvent calls fn with every event of an audit log (JSON lines), in order.
func eachAuditEvent(log io.Reader, fn func(*auditEvent)) error {
	sc := bufio.NewScanner(log)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		fn(&ev)
	}
	return sc.Err()
}

// usedBy reads an audit log (JSON lines) and returns the permissions user was granted and
// used, and the requests refused it, by RBAC or by admission. A write an admission policy refused
// was authorized: the permission counts as used. The tests' own requests as user (probeClient)
// are left out.
func usedBy(log io.Reader, user string) (used map[permission]bool, refused []string, err error) {
	used = map[permission]bool{}
	err = eachAuditEvent(log, func(ev *auditEvent) {
		who := ev.User.Username
		if ev.ImpersonatedUser != nil {
			who = ev.ImpersonatedUser.Username
		}
		if who != user || ev.ObjectRef == nil || ev.UserAgent == probeUserAgent {
			return
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		p := permission{ev.ObjectRef.APIGroup, res, ev.Verb}
		if ev.ResponseStatus != nil && ev.ResponseStatus.Code == 403 {
			if ev.Annotations["authorization.k8s.io/decision"] != "allow" {
				refused = append(refused, fmt.Sprintf("%s (%s)", p, ev.RequestURI))
				return
			}
			refused = append(refused, fmt.Sprintf("%s by admission (%s)", p, ev.RequestURI))
		}
		used[p] = true
	})
	return used, refused, err
}

// writesIn returns the write requests (create, update, patch, delete) the test API server has
// logged so far on objects of the given resources (e.g. "deployments") in namespace ns, each as
// "VERB RESOURCE NAME", in order.
func writesIn(t *testing.T, ns string, resources ...string) []string {
	t.Helper()
	return requestsIn(t, ns, "", []string{"create", "update", "patch", "delete"}, resources...)
}

// requestsIn returns the requests of the given verbs the test API server has logged so far on
// objects of the given resources in namespace ns (not on their subresources), made with
// userAgent (""; any), each as "VERB RESOURCE NAME", in order.
func requestsIn(t *testing.T, ns, userAgent string, verbs []string, resources ...string) []string {
	t.Helper()
	f, err := os.Open(testCluster.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	err = eachAuditEvent(f, func(ev *auditEvent) {
		r := ev.ObjectRef
		if r == nil || r.Namespace != ns || r.Subresource != "" || !slices.Contains(resources, r.Resource) ||
			!slices.Contains(verbs, ev.Verb) || userAgent != "" && ev.UserAgent != userAgent {
			return
		}
		out = append(out, ev.Verb+" "+r.Resource+" "+r.Name)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// notExercised are permissions deploy/ grants that the tests cannot show in use, with the reason
// each is needed.
var notExercised = map[permission]string{
	{"", "pods", "get"}:     "`mcpgate controller` reads its own pod for its image when --extproc-image is not given; the tests give it",
	{"", "events", "patch"}: "the leader election's event recorder patches an event that repeats",
}

// checkRBAC compares what the controller did during the tests, as the audit log at path shows,
// with deploy/controller/rbac.yaml: every request it made was allowed, by RBAC and by deploy/'s
// admission policies (the tests' probes of those, probeClient, are not the controller's), and
// every permission granted was used. Two verbs are used without being audited: create, by a server-side apply
// of an object that does not exist (audited as patch), and list, by an informer's first list
// (client-go asks for it as a watch that sends the initial objects, and falls back to a list on
// API servers without that).
func checkRBAC(auditLogPath, rbacPath string) error {
	b, err := os.ReadFile(rbacPath)
	if err != nil {
		return err
	}
	granted, err := grantedToController(b)
	if err != nil {
		return fmt.Errorf("%s: %w", rbacPath, err)
	}
	f, err := os.Open(auditLogPath)
	if err != nil {
		return err
	}
	defer f.Close()
	used, refused, err := usedBy(f, controllerSA)
	if err != nil {
		return err
	}
	if len(used) == 0 {
		return fmt.Errorf("the audit log %s shows no request of %s", auditLogPath, controllerSA)
	}
	var problems []string
	for _, r := range refused {
		problems = append(problems, "refused: "+r)
	}
	for _, p := range slices.SortedFunc(maps.Keys(granted), func(a, b permission) int { return strings.Compare(a.String(), b.String()) }) {
		applied := p.verb == "create" && used[permission{p.group, p.resource, "patch"}]
		listed := p.verb == "list" && used[permission{p.group, p.resource, "watch"}]
		if used[p] || applied || listed || notExercised[p] != "" {
			continue
		}
		problems = append(problems, "granted, never used: "+p.String())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s and the controller's requests in the tests differ:\n  %s", rbacPath, strings.Join(problems, "\n  "))
	}
	return nil
}
