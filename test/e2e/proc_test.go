package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

// freePort returns a loopback TCP port that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

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
