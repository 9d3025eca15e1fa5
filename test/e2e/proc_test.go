package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/internal/freeport"
)

// proc is a child process of the suite. Its stdout and stderr go to out/NAME.log, or stdout to
// out/NAME.stdout.log when the process writes data there (the data plane's access log).
type proc struct {
	name   string
	cmd    *exec.Cmd
	logs   []string // files holding the output
	exited chan struct{}
	err    error // the Wait error, set before exited is closed
}

// procSpec says how to start a process.
type procSpec struct {
	name        string
	args        []string // args[0] is the program
	env         []string // added to the suite's environment
	dir         string
	splitStdout bool // stdout to NAME.stdout.log, stderr to NAME.log
}

// startProc starts spec in its own process group (so that stop also ends its children, such as the
// data plane mcpgate starts) with its output in outDir.
func startProc(outDir string, spec procSpec) (*proc, error) {
	logPath := filepath.Join(outDir, spec.name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", spec.name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "### %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(spec.args, " "))
	p := &proc{name: spec.name, logs: []string{logPath}, exited: make(chan struct{})}
	cmd := exec.Command(spec.args[0], spec.args[1:]...)
	cmd.Dir = spec.dir
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if spec.splitStdout {
		outPath := filepath.Join(outDir, spec.name+".stdout.log")
		outf, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s: stdout file: %w", spec.name, err)
		}
		defer outf.Close()
		cmd.Stdout = outf
		p.logs = append(p.logs, outPath)
	}
	cmd.SysProcAttr = childAttrs(true)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", spec.name, spec.args[0], err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// childAttrs are the process attributes of every child of the suite. Pdeathsig sends SIGTERM to
// the child when the suite's process dies without stopping it (a test timeout's panic, SIGKILL), so
// that no server outlives a failed run; mcpgate then stops the data plane it started. (Linux sends
// the signal when the thread that started the child exits; the Go runtime ends threads only for
// goroutines locked to them, which this package does not use.) ownGroup puts the child in its own
// process group, so that stop also ends what it starts.
func childAttrs(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: ownGroup, Pdeathsig: syscall.SIGTERM}
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
func (p *proc) stop() {
	if !p.running() {
		return
	}
	pgid := p.cmd.Process.Pid // Setpgid: the group id is the leader's pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
}

// describe says how the process ended, with the end of its log, for error messages.
func (p *proc) describe() string {
	state := "still running"
	if !p.running() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s); last lines of %s:\n%s", p.name, state, p.logs[0], tail(p.logs[0], 30))
	return b.String()
}

// waitTCP waits until addr accepts connections, failing early when p exits.
func waitTCP(p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited before listening on %s\n%s", p.name, addr, p.describe())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s after %s\n%s", p.name, addr, timeout, p.describe())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady waits until GET url answers 200 (Envoy's admin /ready: "LIVE" once the first
// configuration is in), failing early when p exits.
func waitReady(p *proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if !p.running() {
			return fmt.Errorf("%s exited before %s answered 200\n%s", p.name, url, p.describe())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s did not answer 200 after %s (last: %s)\n%s", p.name, url, timeout, last, p.describe())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n distinct loopback TCP ports that nothing listens on now (freeport).
func freePorts(n int) ([]int, error) { return freeport.Ports("127.0.0.1", n) }

// tail returns the last n lines of a file (or why it cannot).
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = append([][]byte{[]byte(fmt.Sprintf("... (%d earlier lines)", len(lines)-n))}, lines[len(lines)-n:]...)
	}
	return string(bytes.Join(lines, []byte("\n")))
}
