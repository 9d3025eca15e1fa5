package file

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/translator"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

const gatewayDoc = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: mcpgate
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
`

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), gatewayDoc+`---
# an empty document follows
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
apiVersion: enterpriseagentgateway.solo.io/v1alpha1
kind: EnterpriseAgentgatewayPolicy
metadata: {name: p, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  traffic: {authorization: {policy: {matchExpressions: ["true"]}}}
`)
	write(t, filepath.Join(dir, "b.yml"), `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata: {name: s}
  stringData: {Authorization: key}
- apiVersion: gateway.networking.k8s.io/v1
  kind: GatewayClass
  metadata: {name: mcpgate, namespace: ignored}
  spec: {controllerName: mcpgate.dev/gateway-controller}
`)
	write(t, filepath.Join(dir, "notes.txt"), "not a manifest")
	write(t, filepath.Join(dir, "sub", "c.yaml"), gatewayDoc) // below the directory: not read

	res, src, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(res.Gateways) != 1 || res.Gateways[0].Namespace != DefaultNamespace {
		t.Fatalf("gateways = %v, want one in namespace default", res.Gateways)
	}
	if len(res.Policies) != 1 || res.Policies[0].Kind != translator.KindEnterpriseAgentgatewayPolicy || res.Policies[0].Namespace != "ns" {
		t.Fatalf("policies = %+v, want the enterprise policy in ns", res.Policies)
	}
	if len(res.Secrets) != 1 || string(res.Secrets[0].Data["Authorization"]) != "key" || res.Secrets[0].StringData != nil {
		t.Fatalf("secret = %+v, want stringData merged into data", res.Secrets)
	}
	if len(res.GatewayClasses) != 1 || res.GatewayClasses[0].Namespace != "" {
		t.Fatalf("gateway classes = %+v, want one, cluster-scoped", res.GatewayClasses)
	}
	loc, ok := src.Of(translator.ObjectKey{Kind: translator.KindEnterpriseAgentgatewayPolicy, Namespace: "ns", Name: "p"})
	if !ok || loc.File != filepath.Join(dir, "a.yaml") || loc.Document != 4 {
		t.Fatalf("location of the policy = %v, %v; want a.yaml document 4", loc, ok)
	}
	if len(src.Warnings) != 1 || !strings.Contains(src.Warnings[0], "document 3: skipped apps/v1 Deployment") {
		t.Fatalf("warnings = %q, want the Deployment skipped", src.Warnings)
	}
	fe := translator.FieldError{Kind: translator.KindGateway, Namespace: "default", Name: "gw", Field: "spec.listeners[0]", Message: "m"}
	if got, want := src.Describe(fe), filepath.Join(dir, "a.yaml")+": Gateway default/gw: spec.listeners[0]: m"; got != want {
		t.Fatalf("Describe = %q, want %q", got, want)
	}
}

// TestLoadErrors: each bad document is named (file, document, object, field) and the good
// objects around it still load.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "bad.yaml")
	write(t, f, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: b, port: 80, wieght: 3}]
---
`+gatewayDoc+`---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: "eighty"}]
---
kind: Service
metadata: {name: nokind}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {namespace: ns}
spec: {static: {host: h, port: 1}}
---
`+gatewayDoc+`---
apiVersion: v1
kind: Service
metadata: {name: 7}
---
key: [unclosed
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: typed, namespace: ns}
spec:
  rules:
  - backendRefs: [{name: a}]
  - backendRefs: [{name: b}, {name: y}]
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: typed, namespace: ns}
spec:
  mcp:
    targets: [{name: t, static: {host: h, port: "80"}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: typed, namespace: ns}
spec:
  gatewayClassName: c
  listeners: {name: http}
`)
	res, _, err := Load(f, filepath.Join(dir, "missing.yaml"))
	if err == nil {
		t.Fatal("Load: no error")
	}
	msg := err.Error()
	for _, want := range []string{
		f + ": document 1: HTTPRoute ns/r: spec.rules[0].backendRefs[0].wieght: unknown field",
		f + ": document 3: Service default/svc: spec.ports[0].port: must be an integer, not a string",
		f + ": document 4: Service nokind: apiVersion and kind are required",
		f + ": document 5: AgentgatewayBackend ns/: metadata.name: a name is required",
		f + ": document 6: Gateway default/gw: defined again; the definition in " + f + " (document 2) is used",
		f + ": document 7: Service default/: metadata.name: not a Kubernetes object: must be a string, not a number",
		f + ": document 9: HTTPRoute ns/typed: spec.rules[1].backendRefs[1].name: must be a string, not a boolean",
		f + ": document 10: AgentgatewayBackend ns/typed: spec.mcp.targets[0].static.port: must be an integer, not a string",
		f + ": document 11: Gateway ns/typed: spec.listeners: must be a list, not an object",
		f + ": document 8: not valid YAML",
		"missing.yaml: ",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	var fe *Error
	if !errors.As(err, &fe) {
		t.Errorf("error %T does not hold a *file.Error", err)
	}
	if len(res.Gateways) != 1 || len(res.HTTPRoutes) != 0 || len(res.Services) != 0 {
		t.Fatalf("loaded %d gateways, %d routes, %d services; want the one good Gateway only",
			len(res.Gateways), len(res.HTTPRoutes), len(res.Services))
	}
}

// TestDecodeErrorsNameTheField: a value of the right JSON type that its type refuses (a
// duration that does not parse, Secret data that is not base64) is named by its field, as is
// a wrong type in the object's header, with the kind when it can be read.
func TestDecodeErrorsNameTheField(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	write(t, f, `apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: p14, namespace: agentgateway-system}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agentgateway}]
  traffic:
    jwtAuthentication:
      providers:
      - {issuer: x, jwks: {remote: {url: "https://x.example/jwks", cacheDuration: 10m}}}
      - {issuer: y, jwks: {remote: {url: "https://y.example/jwks", cacheDuration: banana}}}
---
apiVersion: v1
kind: Secret
metadata: {name: s1, namespace: ns}
data: {a: "b2s=", k: "!!!notbase64"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: [c]}
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: 3}
---
apiVersion: [v1]
kind: Service
metadata: {name: s2}
`)
	_, _, err := Load(f)
	if err == nil {
		t.Fatal("Load: no error")
	}
	for _, want := range []string{
		f + `: document 1: AgentgatewayPolicy agentgateway-system/p14: spec.traffic.jwtAuthentication.providers[1].jwks.remote.cacheDuration: time: invalid duration "banana"`,
		f + ": document 2: Secret ns/s1: data.k: illegal base64 data at input byte 0",
		f + ": document 3: GatewayClass: metadata.name: not a Kubernetes object: must be a string, not a list",
		f + ": document 4: Service s: metadata.namespace: not a Kubernetes object: must be a string, not a number",
		f + ": document 5: Service s2: apiVersion: not a Kubernetes object: must be a string, not a list",
	} {
		if !strings.Contains(err.Error()+"\n", want+"\n") {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

// loaded is one callback of Watch.
type loaded struct {
	res  *translator.Resources
	kept []string
	err  error
}

// startWatch runs Watch in the background; its callbacks arrive on the channel.
func startWatch(t *testing.T, paths ...string) (<-chan loaded, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan loaded, 16)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, paths, func(r *translator.Resources, src Sources, err error) []string {
			ch <- loaded{r, src.Kept, err}
			return nil
		})
	}()
	return ch, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	}
}

func next(t *testing.T, ch <-chan loaded) loaded {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
	}
	return loaded{}
}

// watchedGateway writes the Gateway on 8080 to DIR/gw.yaml, watches the directory (or, with
// file, the file), checks the first load and returns the file and the reloads.
func watchedGateway(t *testing.T, file bool) (string, <-chan loaded) {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "gw.yaml")
	write(t, f, gatewayDoc)
	path := dir
	if file {
		path = f
	}
	ch, stop := startWatch(t, path)
	t.Cleanup(stop)
	if p := listenerPort(t, next(t, ch)); p != 8080 {
		t.Fatalf("initial port %d", p)
	}
	return f, ch
}

// noReload fails if a reload comes within five debounce delays.
func noReload(t *testing.T, ch <-chan loaded) {
	t.Helper()
	select {
	case l := <-ch:
		t.Fatalf("unexpected reload: %+v", l)
	case <-time.After(5 * DebounceDelay):
	}
}

// TestWatchReloadsDuringContinuousWrites: changes that keep coming faster than DebounceDelay
// still give a reload while they go on (DebounceLimit lets it through; without it the debounce
// would wait for the writes to stop, which they do not until the test ends). The bound itself is
// not timed here.
func TestWatchReloadsDuringContinuousWrites(t *testing.T) {
	f, ch := watchedGateway(t, false)
	dir := filepath.Dir(f)
	done := make(chan struct{})
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		tmp := filepath.Join(dir, "gw.yaml.tmp") // not a manifest: only the rename counts
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(DebounceDelay / 5):
			}
			// whole files only (write, then rename over), so that every reload reads a good one
			doc := strings.Replace(gatewayDoc, "8080", strconv.Itoa(9000+i%100), 1)
			if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
				t.Error(err)
				return
			}
			if err := os.Rename(tmp, f); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() {
		close(done)
		<-writing
	}()
	l := next(t, ch)
	select {
	case <-writing:
		t.Fatal("the writer stopped before the reload")
	default:
	}
	if l.err != nil || len(l.res.Gateways) != 1 {
		t.Fatalf("reload during writes: %d gateways, err %v", len(l.res.Gateways), l.err)
	}
}

func listenerPort(t *testing.T, l loaded) int32 {
	t.Helper()
	if l.err != nil || len(l.res.Gateways) != 1 {
		t.Fatalf("load = %d gateways, err %v; want one Gateway", len(l.res.Gateways), l.err)
	}
	return l.res.Gateways[0].Spec.Listeners[0].Port
}

// wantLastGood checks a load that serves the last good Gateway, on port, with an error naming
// the problem (wantErr) and saying that the last good version is served.
func wantLastGood(t *testing.T, l loaded, wantErr string, port int32) {
	t.Helper()
	if l.err == nil || !strings.Contains(l.err.Error(), wantErr) || len(l.kept) != 1 || !strings.Contains(l.kept[0], "last good version") {
		t.Fatalf("err %v, kept %q; want %q and that the last good version is served", l.err, l.kept, wantErr)
	}
	if strings.Contains(l.err.Error(), "last good version") {
		t.Fatalf("err %v: the note that the last good version is served is not an error", l.err)
	}
	if len(l.res.Gateways) != 1 || l.res.Gateways[0].Spec.Listeners[0].Port != port {
		t.Fatalf("%d gateways, want the last good one on %d", len(l.res.Gateways), port)
	}
}

func TestWatchDirectory(t *testing.T) {
	f, ch := watchedGateway(t, false)
	dir := filepath.Dir(f)
	// an edit in place
	write(t, f, strings.Replace(gatewayDoc, "8080", "8081", 1))
	if p := listenerPort(t, next(t, ch)); p != 8081 {
		t.Fatalf("port after edit %d, want 8081", p)
	}
	// an editor's save: write a temporary file, rename it over the original
	tmp := filepath.Join(dir, ".gw.yaml.swp")
	write(t, tmp, strings.Replace(gatewayDoc, "8080", "8082", 1))
	if err := os.Rename(tmp, f); err != nil {
		t.Fatal(err)
	}
	if p := listenerPort(t, next(t, ch)); p != 8082 {
		t.Fatalf("port after rename %d, want 8082", p)
	}
	// files that are not manifests (an editor's swap file, a log) cause no reload
	write(t, filepath.Join(dir, "notes.txt"), "x")
	write(t, filepath.Join(dir, ".gw.yaml.swp"), "x")
	noReload(t, ch)
	// a bad edit reports the error with what could still be read
	write(t, filepath.Join(dir, "bad.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {nope: 1}\n")
	l := next(t, ch)
	if l.err == nil || !strings.Contains(l.err.Error(), "spec.nope: unknown field") || len(l.res.Gateways) != 1 {
		t.Fatalf("after a bad file: err %v, %d gateways; want the error and the Gateway", l.err, len(l.res.Gateways))
	}
}

func TestWatchFile(t *testing.T) {
	f, ch := watchedGateway(t, true)
	dir := filepath.Dir(f)
	// another file in the same directory is not watched: no reload for it
	write(t, filepath.Join(dir, "other.yaml"), "not: watched\n")
	noReload(t, ch)
	write(t, f, strings.Replace(gatewayDoc, "8080", "9000", 1))
	if p := listenerPort(t, next(t, ch)); p != 9000 {
		t.Fatalf("port after edit %d, want 9000", p)
	}
	// the named file disappears: its last good content is served, and the error says why
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	wantLastGood(t, next(t, ch), "no such file", 9000)
	// and it is back
	write(t, f, strings.Replace(gatewayDoc, "8080", "9001", 1))
	if p := listenerPort(t, next(t, ch)); p != 9001 {
		t.Fatalf("port after the file is back %d, want 9001", p)
	}
}

// TestWatchDirectoryRemoved: a watched directory renamed or removed keeps its files' last good
// content served, and is watched again when it is back.
func TestWatchDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	f := filepath.Join(dir, "gw.yaml")
	write(t, f, gatewayDoc)
	ch, stop := startWatch(t, dir)
	defer stop()
	if p := listenerPort(t, next(t, ch)); p != 8080 {
		t.Fatalf("first load: port %d", p)
	}
	// until wants a reload serving port, skipping those on the way there (a directory made
	// and filled is seen between the two)
	until := func(what string, port int32) loaded {
		t.Helper()
		for {
			l := next(t, ch)
			if len(l.res.Gateways) == 1 && l.res.Gateways[0].Spec.Listeners[0].Port == port {
				return l
			}
			t.Logf("%s: a reload on the way: %d gateways, err %v", what, len(l.res.Gateways), l.err)
		}
	}
	away := dir + ".away"
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	wantLastGood(t, next(t, ch), "no such file", 8080)
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	write(t, f, strings.Replace(gatewayDoc, "8080", "8081", 1))
	if l := until("renamed back and edited", 8081); l.err != nil || len(l.kept) != 0 {
		t.Fatalf("renamed back: err %v, kept %q", l.err, l.kept)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	wantLastGood(t, next(t, ch), "no such file", 8081)
	write(t, f, strings.Replace(gatewayDoc, "8080", "8082", 1))
	until("made again", 8082)
	// the new directory is watched: an edit in it is served
	write(t, f, strings.Replace(gatewayDoc, "8080", "8083", 1))
	until("edited in the new directory", 8083)
}

// TestWatchServedDefinitionStays: a file that defines again an object another file serves does
// not take it over, whatever the order of their names: a new file's definition is dropped (its
// other objects are served), an edited file keeps its last good version.
func TestWatchServedDefinitionStays(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gw.yaml"), gatewayDoc)
	ch, stop := startWatch(t, dir)
	defer stop()
	next(t, ch)
	ports := func(l loaded) map[string]int32 {
		m := map[string]int32{}
		for _, gw := range l.res.Gateways {
			m[gw.Name] = gw.Spec.Listeners[0].Port
		}
		return m
	}
	other := strings.Replace(strings.Replace(gatewayDoc, "8080", "7000", 1), "name: gw", "name: other", 1)
	copyFile := filepath.Join(dir, "copy.yaml") // before gw.yaml in name order
	write(t, copyFile, strings.Replace(gatewayDoc, "8080", "9000", 1)+"---\n"+other)
	l := next(t, ch)
	if got := ports(l); !maps.Equal(got, map[string]int32{"gw": 8080, "other": 7000}) {
		t.Fatalf("a new file defining gw again: ports %v, want gw kept on 8080 and other served", got)
	}
	if l.err == nil || !strings.Contains(l.err.Error(), copyFile+": document 1: Gateway default/gw: defined again; the definition in "+filepath.Join(dir, "gw.yaml")+" (document 1) is used") {
		t.Fatalf("err %v, want the new definition refused", l.err)
	}
	// copy.yaml, now served without gw, is edited to define gw: it keeps its last good version
	write(t, copyFile, other+"---\n"+strings.Replace(gatewayDoc, "8080", "9001", 1))
	l = next(t, ch)
	if got := ports(l); !maps.Equal(got, map[string]int32{"gw": 8080, "other": 7000}) {
		t.Fatalf("an edit defining gw again: ports %v, want gw kept on 8080", got)
	}
	if l.err == nil || !strings.Contains(l.err.Error(), "Gateway default/gw: defined again; the definition in "+filepath.Join(dir, "gw.yaml")+" is served") ||
		len(l.kept) != 1 || !strings.HasPrefix(l.kept[0], copyFile+": serving its last good version") {
		t.Fatalf("err %v, kept %q: want the edit refused and copy.yaml kept", l.err, l.kept)
	}
	// gw moves from gw.yaml to copy.yaml (and other the other way): they move. The two writes
	// may be seen in two reloads, the first of which keeps gw.yaml.
	write(t, filepath.Join(dir, "gw.yaml"), other)
	write(t, copyFile, strings.Replace(gatewayDoc, "8080", "9002", 1))
	for l = next(t, ch); ports(l)["gw"] != 9002; l = next(t, ch) {
		t.Logf("a reload on the way: ports %v, err %v", ports(l), l.err)
	}
	if got := ports(l); !maps.Equal(got, map[string]int32{"gw": 9002, "other": 7000}) || l.err != nil {
		t.Fatalf("gw moved: ports %v, err %v; want copy.yaml's gw on 9002", got, l.err)
	}
	write(t, filepath.Join(dir, "gw.yaml"), gatewayDoc)
	l = next(t, ch)
	if got := ports(l); !maps.Equal(got, map[string]int32{"gw": 9002, "other": 7000}) || len(l.kept) != 1 {
		t.Fatalf("gw.yaml defines gw again: ports %v, kept %q; want copy.yaml's gw served, gw.yaml kept", got, l.kept)
	}
	// copy.yaml goes: gw.yaml's definition is served
	if err := os.Remove(copyFile); err != nil {
		t.Fatal(err)
	}
	l = next(t, ch)
	if got := ports(l); !maps.Equal(got, map[string]int32{"gw": 8080}) || l.err != nil {
		t.Fatalf("copy.yaml removed: ports %v, err %v; want gw.yaml's gw on 8080", got, l.err)
	}
}

func TestWatchKeepsLastGoodVersionOfABadFile(t *testing.T) {
	f, ch := watchedGateway(t, false)
	// a typo in the served file: the error is reported and the last good Gateway is kept
	write(t, f, strings.Replace(gatewayDoc, "port: 8080", "prot: 8081", 1))
	wantLastGood(t, next(t, ch), "unknown field", 8080)
	// the fix is served
	write(t, f, strings.Replace(gatewayDoc, "8080", "8083", 1))
	l := next(t, ch)
	if l.err != nil {
		t.Fatalf("after the fix: %v", l.err)
	}
	if p := listenerPort(t, l); p != 8083 {
		t.Fatalf("after the fix the port is %d, want 8083", p)
	}
	// a removed file takes its objects with it
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	if l := next(t, ch); len(l.res.Gateways) != 0 {
		t.Fatalf("after removing the file: %d gateways, want 0", len(l.res.Gateways))
	}
}

// TestWatchHoldBack: when fn holds back the changed files (here: a Gateway on port 9999, which
// stands for content the pipeline refuses), Watch calls fn again at once with their served
// content, and the next edit is tried anew. A new file has nothing to go back to.
func TestWatchHoldBack(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "gw.yaml")
	write(t, f, gatewayDoc)
	type call struct {
		port    int
		changed []string
		kept    []string
		err     error
	}
	ch := make(chan call, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, []string{dir}, func(r *translator.Resources, src Sources, err error) []string {
			c := call{changed: src.Changed, kept: src.Kept, err: err}
			for _, gw := range r.Gateways {
				c.port = max(c.port, int(gw.Spec.Listeners[0].Port))
			}
			ch <- c
			if c.port == 9999 {
				return src.Changed
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	nextCall := func() call {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no call within 10s")
		}
		return call{}
	}
	if c := nextCall(); c.port != 8080 || len(c.changed) != 0 {
		t.Fatalf("first load: %+v", c)
	}
	write(t, f, strings.Replace(gatewayDoc, "8080", "9999", 1))
	if c := nextCall(); c.port != 9999 || !slices.Equal(c.changed, []string{f}) {
		t.Fatalf("the edit: %+v, want port 9999 with %s changed", c, f)
	}
	c := nextCall()
	if c.port != 8080 || len(c.changed) != 0 || c.err != nil || !slices.Equal(c.kept, []string{f + ": serving its last good version: its new content was refused"}) {
		t.Fatalf("after holding back: %+v, want the served port 8080 and why", c)
	}
	write(t, f, strings.Replace(gatewayDoc, "8080", "8083", 1))
	if c := nextCall(); c.port != 8083 || !slices.Equal(c.changed, []string{f}) || c.err != nil {
		t.Fatalf("the next edit: %+v, want port 8083", c)
	}
	// a new file: nothing to hold back, so what it holds is served
	other := filepath.Join(dir, "other.yaml")
	write(t, other, strings.Replace(strings.Replace(gatewayDoc, "8080", "9999", 1), "name: gw", "name: other", 1))
	if c := nextCall(); c.port != 9999 || len(c.changed) != 0 {
		t.Fatalf("a new file: %+v, want it served, nothing changed to hold back", c)
	}
	select {
	case c := <-ch:
		t.Fatalf("a call after fn held back nothing it could: %+v", c)
	case <-time.After(5 * DebounceDelay):
	}
}

// TestKindMistakes: a document of a kind mcpgate does not read is skipped when it is a real
// kind (a Deployment, a GRPCRoute) or of a group mcpgate knows nothing of, and refused, naming
// the field, when no API server would serve it in a group mcpgate reads from or when it is a
// kind mcpgate reads under another apiVersion: a policy skipped for a typo is not enforced.
func TestKindMistakes(t *testing.T) {
	for _, c := range []struct {
		apiVersion, kind string
		want             string // the error's field and message; "" for a skipped document
	}{
		{"apps/v1", "Deployment", ""},
		{"gateway.networking.k8s.io/v1", "GRPCRoute", ""},
		{"gateway.networking.k8s.io/v1alpha2", "TLSRoute", ""},
		{"agentgateway.dev/v1alpha1", "AgentgatewayParameters", ""},
		{"ratelimit.solo.io/v1alpha1", "RateLimitConfig", ""},
		{"monitoring.coreos.com/v1", "ServiceMonitor", ""},
		{"enterpriseagentgateway.solo.io/v1alpha1", "EnterpriseAgentGatewayPolicy",
			`kind: no kind "EnterpriseAgentGatewayPolicy" in enterpriseagentgateway.solo.io/v1alpha1 (did you mean EnterpriseAgentgatewayPolicy?)`},
		{"enterpriseagentgateway.solo.io/v1", "EnterpriseAgentgatewayPolicy",
			"apiVersion: EnterpriseAgentgatewayPolicy is not served in enterpriseagentgateway.solo.io/v1: use enterpriseagentgateway.solo.io/v1alpha1"},
		{"agentgateway.solo.io/v1alpha1", "AgentgatewayPolicy",
			"apiVersion: AgentgatewayPolicy is not served in agentgateway.solo.io/v1alpha1: use agentgateway.dev/v1alpha1"},
		{"gateway.networking.k8s.io/v1", "HTTPRoutes", `kind: no kind "HTTPRoutes" in gateway.networking.k8s.io/v1`},
		{"gateway.networking.k8s.io/v1", "httproute", `kind: no kind "httproute" in gateway.networking.k8s.io/v1 (did you mean HTTPRoute?)`},
		{"gateway.networking.k8s.io/v2", "HTTPRoute", "apiVersion: HTTPRoute is not served in gateway.networking.k8s.io/v2: use gateway.networking.k8s.io/v1 or gateway.networking.k8s.io/v1beta1"},
		{"v1", "Services", `kind: no kind "Services" in v1`},
		{"agentgateway.dev/v1alpha1", "Backend", `kind: no kind "Backend" in agentgateway.dev/v1alpha1`},
		{"a/b/c", "X", "apiVersion: unexpected GroupVersion string: a/b/c"},
	} {
		t.Run(c.apiVersion+"/"+c.kind, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "a.yaml")
			write(t, f, fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata: {name: x, namespace: ns}\n---\n%s", c.apiVersion, c.kind, gatewayDoc))
			res, src, err := Load(dir)
			if len(res.Gateways) != 1 {
				t.Fatalf("gateways = %d, want the other document's Gateway", len(res.Gateways))
			}
			if c.want == "" {
				if err != nil || len(src.Warnings) != 1 || !strings.Contains(src.Warnings[0], "skipped "+c.apiVersion+" "+c.kind) {
					t.Fatalf("err %v, warnings %q: want the document skipped", err, src.Warnings)
				}
				return
			}
			want := fmt.Sprintf("%s: document 1: %s ns/x: %s", f, c.kind, c.want)
			if err == nil || err.Error() != want {
				t.Fatalf("err %v\nwant %s", err, want)
			}
		})
	}
}

// TestCacheFileThatNeverLoaded: a file whose first version does not load has no last good
// version: its next bad version is not "kept" at the first one, its problems are the current
// version's only, nothing of it is served, and the note says so. Once it loads, a bad edit keeps
// that good version; a file served before is not affected.
func TestCacheFileThatNeverLoaded(t *testing.T) {
	dir := t.TempDir()
	gw, bad := filepath.Join(dir, "gw.yaml"), filepath.Join(dir, "bad.yaml")
	write(t, gw, gatewayDoc)
	write(t, bad, "kind: Foo\n  bad: [\n")
	nothingServed := bad + ": nothing of it is served until its errors are fixed: it has no last good version"
	var c Cache
	load := func(step string) (*translator.Resources, Sources, string) {
		t.Helper()
		res, src, err := c.Load(dir)
		c.Commit()
		if len(res.Gateways) != 1 {
			t.Fatalf("%s: %d gateways, want gw.yaml's one, whatever bad.yaml holds", step, len(res.Gateways))
		}
		if err == nil {
			return res, src, ""
		}
		return res, src, err.Error()
	}

	_, src, msg := load("first version, not YAML")
	if !strings.Contains(msg, bad+": document 1: not valid YAML") || !slices.Equal(src.Kept, []string{nothingServed}) || !slices.Equal(src.Added, []string{bad, gw}) {
		t.Fatalf("first version: err %q, kept %q, added %q; want the YAML error and that nothing of it is served", msg, src.Kept, src.Added)
	}

	backend := "apiVersion: agentgateway.dev/v1alpha1\nkind: AgentgatewayBackend\nmetadata: {name: b}\nspec:\n  static:\n    hots: 127.0.0.1\n    port: 8000\n"
	write(t, bad, backend)
	res, src, msg := load("second version, an unknown field")
	wantErr := bad + ": document 1: AgentgatewayBackend default/b: spec.static.hots: unknown field"
	if msg != wantErr || !slices.Equal(src.Kept, []string{nothingServed}) || len(src.Changed) != 0 || !slices.Equal(src.Added, []string{bad}) || len(res.Backends) != 0 {
		t.Fatalf("second version: err %q, kept %q, changed %q, added %q, %d backends; want only %q, nothing of it served, nothing kept",
			msg, src.Kept, src.Changed, src.Added, len(res.Backends), wantErr)
	}
	// held back, a file with no good version to go back to is left out whole, and that is not its
	// good version: the next Load tries its content anew
	res, src, err, held := c.HoldBack([]string{bad})
	if wantKept := []string{bad + ": nothing of it is served: it is new and its content was refused"}; !held || err == nil || err.Error() != wantErr ||
		!slices.Equal(src.Kept, wantKept) || len(src.Added) != 0 || len(res.Backends) != 0 || len(res.Gateways) != 1 {
		t.Fatalf("held back: held %v, err %v, kept %q, added %q, %d backends; want it left out, its errors still reported, and %q",
			held, err, src.Kept, src.Added, len(res.Backends), wantKept)
	}
	if _, _, _, held := c.HoldBack([]string{bad}); held {
		t.Fatal("HoldBack held back a file held back already")
	}
	c.Commit()

	write(t, bad, "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  ports: [{port: 80}]\n---\n"+backend)
	res, src, msg = load("third version, one document loads")
	if msg != strings.Replace(wantErr, "document 1", "document 2", 1) || len(res.Services) != 1 ||
		!slices.Equal(src.Kept, []string{bad + ": only its objects that load are served until its errors are fixed: it has no last good version"}) {
		t.Fatalf("third version: err %q, kept %q, %d services; want the Service served and that only it is", msg, src.Kept, len(res.Services))
	}

	write(t, bad, strings.Replace(backend, "hots", "host", 1))
	res, src, msg = load("fixed")
	if msg != "" || len(src.Kept) != 0 || len(res.Backends) != 1 {
		t.Fatalf("fixed: err %q, kept %q, %d backends; want the backend served", msg, src.Kept, len(res.Backends))
	}

	write(t, bad, backend)
	res, src, msg = load("a bad edit of the loaded file")
	if msg != wantErr || !slices.Equal(src.Kept, []string{bad + ": serving its last good version until its errors are fixed"}) || len(res.Backends) != 1 {
		t.Fatalf("bad edit: err %q, kept %q, %d backends; want the fixed version kept", msg, src.Kept, len(res.Backends))
	}
}
