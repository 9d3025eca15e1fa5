package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// inspector runs the MCP inspector CLI (`mcp-inspector --cli`), each run a new process, and
// records every run in out/inspector.log.
type inspector struct {
	bin string
	env []string
	log string
	mu  sync.Mutex // serializes writes to log
}

// newInspector returns an inspector whose state (storage, OAuth state, secrets) stays under
// stateDir, as the reference prescribes for runs without a TTY.
func newInspector(bin, stateDir, log string) (*inspector, error) {
	storage := filepath.Join(stateDir, "inspector-storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, fmt.Errorf("inspector state: %w", err)
	}
	return &inspector{
		bin: bin,
		env: []string{
			"MCP_STORAGE_DIR=" + storage,
			"MCP_INSPECTOR_OAUTH_STATE_PATH=" + filepath.Join(storage, "oauth.json"),
			"MCP_INSPECTOR_SECRET_STORE=memory",
		},
		log: log,
	}, nil
}

// inspectorRun is one finished run of the CLI.
type inspectorRun struct {
	args   []string
	code   int
	stdout string
	stderr string
}

// inspectorError is the CLI's one-line error envelope on stderr.
type inspectorError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

// run starts `mcp-inspector --cli ARGS --format json -q` and waits for it (at most a minute).
func (in *inspector) run(args ...string) inspectorRun { return in.runWith(nil, args...) }

// runWith is run with env ("KEY=VALUE") added to the CLI's environment.
func (in *inspector) runWith(env []string, args ...string) inspectorRun {
	args = append(append([]string{"--cli"}, args...), "--format", "json", "-q")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.bin, args...)
	cmd.Env = append(append(os.Environ(), in.env...), env...)
	cmd.SysProcAttr = childAttrs(false)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := inspectorRun{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		r.code = -1
		r.stderr += "\n" + err.Error()
	}
	in.record(r)
	return r
}

// bearer matches the token of an Authorization header, so that logs never hold one.
var bearer = regexp.MustCompile(`(?i)(Bearer\s+)[A-Za-z0-9._~+/=-]+`)

func redact(s string) string { return bearer.ReplaceAllString(s, "${1}<redacted>") }

func (in *inspector) record(r inspectorRun) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f, err := os.OpenFile(in.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "### %s\n%s\n", time.Now().Format(time.RFC3339Nano), r)
}

// String shows the run as a shell transcript, tokens redacted.
func (r inspectorRun) String() string {
	quoted := make([]string, len(r.args))
	for i, a := range r.args {
		if strings.ContainsAny(a, " \"'{}$") {
			a = "'" + a + "'"
		}
		quoted[i] = a
	}
	return redact(fmt.Sprintf("$ mcp-inspector %s\nexit %d\nstdout: %s\nstderr: %s",
		strings.Join(quoted, " "), r.code, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr)))
}

// result decodes stdout's {"result": ...} into v.
func (r inspectorRun) result(v any) error {
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &env); err != nil || env.Result == nil {
		return fmt.Errorf("stdout is not {\"result\": ...}: %v\n%s", err, r)
	}
	if err := json.Unmarshal(env.Result, v); err != nil {
		return fmt.Errorf("result: %w\n%s", err, r)
	}
	return nil
}

// failure decodes stderr's {"error": ...} envelope (the last line that holds one).
func (r inspectorRun) failure() (inspectorError, error) {
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var env struct {
			Error *inspectorError `json:"error"`
		}
		if json.Unmarshal([]byte(lines[i]), &env) == nil && env.Error != nil {
			return *env.Error, nil
		}
	}
	return inspectorError{}, fmt.Errorf("stderr holds no {\"error\": ...} envelope\n%s", r)
}

// toolList is the result of tools/list.
type toolList struct {
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

func (l toolList) names() []string {
	names := make([]string, len(l.Tools))
	for i, t := range l.Tools {
		names[i] = t.Name
	}
	return names
}

// toolResult is the result of tools/call.
type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	IsError bool `json:"isError"`
}

func (r toolResult) text() string {
	var b strings.Builder
	for _, c := range r.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}
