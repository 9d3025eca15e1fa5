package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"sigs.k8s.io/yaml"
)

// ports are the loopback ports of one suite run, all chosen free at start.
type ports struct {
	gateway        int // the lab Gateway's listener "http" (8080 in the example)
	everythingSSE  int // Gateway listener to server-everything over SSE
	everythingHTTP int // Gateway listener to server-everything over Streamable HTTP
	conformance    int // Gateway listener to the conformance server
	conformanceSSE int // Gateway listener to the conformance server over HTTP+SSE (bridged)

	fetch             int // examples/fetchserver (8000 in the example)
	everythingSSEUp   int
	everythingHTTPUp  int
	conformanceUp     int
	conformanceSSEUp  int // test/sseadapter: the conformance server over HTTP+SSE
	xds, extproc      int // mcpgate
	admin, envoyAdmin int // mcpgate admin, the data plane's admin
	mux               int // mcpgate's mux of multiplexed backends
}

func pickPorts() (ports, error) {
	var p ports
	fields := []*int{&p.gateway, &p.everythingSSE, &p.everythingHTTP, &p.conformance, &p.conformanceSSE, &p.fetch,
		&p.everythingSSEUp, &p.everythingHTTPUp, &p.conformanceUp, &p.conformanceSSEUp, &p.xds, &p.extproc, &p.admin, &p.envoyAdmin, &p.mux}
	free, err := freePorts(len(fields))
	if err != nil {
		return ports{}, err
	}
	for i, f := range fields {
		*f = free[i]
	}
	return p, nil
}

// labDir is the folder `mcpgate run -f` watches: the lab's files from examples/mcp-connectivity,
// edited where a test run demands it (free ports, extra listeners and backends), and the policies
// of the steps reached so far. Files are replaced by rename, so the watcher never reads half a file.
type labDir struct {
	dir     string // the watched folder
	scratch string // same file system, not watched: files are written here, then renamed
	example string // examples/mcp-connectivity
	ports   ports
}

// Files of the watched folder.
const (
	fileGateway = "gateway.yaml" // the example's, port edited, listeners added
	fileMCP     = "mcp.yaml"     // the example's (lab step 3), target port edited, route pinned to listener http
	// testdata/e2e-backends.yaml: server-everything and the conformance server (also over HTTP+SSE)
	fileBackends = "e2e-backends.yaml"
	fileJWT      = "jwt.yaml"       // lab step 6
	fileRBAC     = "rbac.yaml"      // lab step 9
	fileMCPTools = "mcp-tools.yaml" // testdata/mcp-tools.yaml: only echo on server-everything
	// testdata/fetch-tools.yaml: an MCP rule on the lab's backend that hides its only tool, fetch
	fileFetchTools = "fetch-tools.yaml"
	// testdata/conformance-rule.yaml: an MCP rule allowing all on the conformance backend
	fileConformanceRule = "conformance-rule.yaml"
)

func newLabDir(root, example string, p ports) (*labDir, error) {
	d := &labDir{dir: filepath.Join(root, "watched"), scratch: filepath.Join(root, "scratch"), example: example, ports: p}
	for _, dir := range []string{d.dir, d.scratch} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// put writes a file into the watched folder atomically.
func (d *labDir) put(name string, data []byte) error {
	tmp := filepath.Join(d.scratch, name)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, name)); err != nil {
		return fmt.Errorf("move %s into the watched folder: %w", name, err)
	}
	return nil
}

// remove deletes a file from the watched folder; a missing file is no error.
func (d *labDir) remove(name string) error {
	if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// example reads a file of examples/mcp-connectivity.
func (d *labDir) exampleFile(name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(d.example, name))
	if err != nil {
		return nil, fmt.Errorf("example: %w", err)
	}
	return data, nil
}

// base writes the lab as it stands after step 3 (Gateway, backend and route, no policy) plus the
// suite's other backends, and removes every policy.
func (d *labDir) base() error {
	gw, err := d.gateway()
	if err != nil {
		return err
	}
	mcp, err := d.mcpRoute()
	if err != nil {
		return err
	}
	backends, err := os.ReadFile("testdata/e2e-backends.yaml")
	if err != nil {
		return err
	}
	vars := map[string]int{
		"EVERYTHING_SSE_PORT":  d.ports.everythingSSEUp,
		"EVERYTHING_HTTP_PORT": d.ports.everythingHTTPUp,
		"CONFORMANCE_PORT":     d.ports.conformanceUp,
		"CONFORMANCE_SSE_PORT": d.ports.conformanceSSEUp,
	}
	backends = []byte(os.Expand(string(backends), func(k string) string { return strconv.Itoa(vars[k]) }))
	for _, name := range []string{fileJWT, fileRBAC, fileMCPTools, fileFetchTools, fileConformanceRule} {
		if err := d.remove(name); err != nil {
			return err
		}
	}
	for name, data := range map[string][]byte{fileGateway: gw, fileMCP: mcp, fileBackends: backends} {
		if err := d.put(name, data); err != nil {
			return err
		}
	}
	return nil
}

// gateway is the example's gateway.yaml with the listener "http" on the suite's port and one
// listener per extra backend.
func (d *labDir) gateway() ([]byte, error) {
	return d.editExample(fileGateway, func(obj map[string]any) error {
		if obj["kind"] != "Gateway" {
			return nil
		}
		spec := obj["spec"].(map[string]any)
		listeners := spec["listeners"].([]any)
		first := listeners[0].(map[string]any)
		if first["name"] != "http" {
			return fmt.Errorf("Gateway listener 0 is %v, want http", first["name"])
		}
		first["port"] = d.ports.gateway
		for _, l := range []struct {
			name string
			port int
		}{{"everything-sse", d.ports.everythingSSE}, {"everything-http", d.ports.everythingHTTP}, {"conformance", d.ports.conformance},
			{"conformance-sse", d.ports.conformanceSSE}} {
			listeners = append(listeners, map[string]any{
				"name": l.name, "port": l.port, "protocol": "HTTP",
				"allowedRoutes": map[string]any{"namespaces": map[string]any{"from": "All"}},
			})
		}
		spec["listeners"] = listeners
		return nil
	})
}

// mcpRoute is the example's mcp.yaml (lab step 3) with the target on the fetch server's port and
// the route attached to the listener "http" only (the other listeners have their own routes).
func (d *labDir) mcpRoute() ([]byte, error) {
	return d.editExample(fileMCP, func(obj map[string]any) error {
		spec := obj["spec"].(map[string]any)
		switch obj["kind"] {
		case "AgentgatewayBackend":
			target := spec["mcp"].(map[string]any)["targets"].([]any)[0].(map[string]any)
			target["static"].(map[string]any)["port"] = d.ports.fetch
		case "HTTPRoute":
			spec["parentRefs"].([]any)[0].(map[string]any)["sectionName"] = "http"
		}
		return nil
	})
}

// editExample applies edit to each YAML document of an example file.
func (d *labDir) editExample(name string, edit func(map[string]any) error) ([]byte, error) {
	data, err := d.exampleFile(name)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, i, err)
		}
		if obj == nil {
			continue
		}
		if err := edit(obj); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, i, err)
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return bytes.Join(out, []byte("---\n")), nil
}

// copyExample puts an example file into the watched folder unchanged (the lab's policies apply
// verbatim).
func (d *labDir) copyExample(name string) error {
	data, err := d.exampleFile(name)
	if err != nil {
		return err
	}
	return d.put(name, data)
}

// putTestdata puts a testdata file into the watched folder.
func (d *labDir) putTestdata(name string) error {
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		return err
	}
	return d.put(name, data)
}

// jwtWithProvider is the lab's jwt.yaml with a second provider appended (the lab's stays first).
func (d *labDir) jwtWithProvider(issuer, jwks string) ([]byte, error) {
	return d.editExample(fileJWT, func(obj map[string]any) error {
		authn := obj["spec"].(map[string]any)["traffic"].(map[string]any)["jwtAuthentication"].(map[string]any)
		authn["providers"] = append(authn["providers"].([]any), map[string]any{
			"issuer": issuer,
			"jwks":   map[string]any{"inline": jwks},
		})
		return nil
	})
}
