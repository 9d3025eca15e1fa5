package supervisor

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEnvoyStopsWhenMcpgateIsKilled kills a process running the Envoy supervisor with SIGKILL
// (no chance to stop its children): its Envoy must stop too, or it would keep the ports that
// the next `mcpgate run` starts Envoy on.
func TestEnvoyStopsWhenMcpgateIsKilled(t *testing.T) {
	if os.Getenv("MCPGATE_TEST_SUPERVISE") != "" {
		superviseForever(t)
		return
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "envoy")
	pidFile := filepath.Join(dir, "envoy.pid")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho $$ > "+pidFile+".tmp && mv "+pidFile+".tmp "+pidFile+"\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestEnvoyStopsWhenMcpgateIsKilled$")
	parent.Env = append(os.Environ(), "MCPGATE_TEST_SUPERVISE="+pidFile, "MCPGATE_TEST_ENVOY="+bin)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	eventually(t, "Envoy started", func() error {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return err
	})
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	eventually(t, "Envoy stopped with mcpgate", func() error {
		if running(pid) {
			return fmt.Errorf("process %d still runs", pid)
		}
		return nil
	})
}

// superviseForever runs the supervisor of the Envoy in $MCPGATE_TEST_ENVOY until killed.
func superviseForever(t *testing.T) {
	s := New(runDefaults(t, os.Getenv("MCPGATE_TEST_ENVOY")), slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	s.Sync([]string{"ns/gw"})
	select {}
}

// eventually calls f until it returns nil, failing the test when 20 s pass first.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for err := f(); err != nil; err = f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running tells whether process pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
