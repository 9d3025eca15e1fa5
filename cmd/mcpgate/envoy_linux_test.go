package main

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
)

// TestEnvoyStopsWhenMcpgateIsKilled kills a process running the Envoy supervisor with SIGKILL
// (no chance to stop its children): its Envoy must stop too, or it would keep the ports that
// the next `mcpgate run` starts Envoy on.
func TestEnvoyStopsWhenMcpgateIsKilled(t *testing.T) {
	if pidFile := os.Getenv("MCPGATE_TEST_SUPERVISE"); pidFile != "" {
		superviseForever(t, pidFile)
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
func superviseForever(t *testing.T, dir string) {
	cfg, err := parseRunFlags([]string{"-f", filepath.Dir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	s := newSupervisor(os.Getenv("MCPGATE_TEST_ENVOY"), cfg, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	s.sync([]string{"ns/gw"})
	select {}
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
