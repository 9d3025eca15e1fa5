package file

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

const serviceDoc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec: {ports: [{port: 80}]}\n"

// TestDirectorySkipsNonRegularFiles: in a directory, a named pipe called *.yaml (or a link to
// one) is skipped with a note naming it, never opened: reading it would wait for a writer. A link
// to a regular file is read. (Here a writer waits for the pipe to be opened: a Load that opened
// it would read its Service.)
func TestDirectorySkipsNonRegularFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no named pipes")
	}
	dir, elsewhere := t.TempDir(), t.TempDir()
	write(t, filepath.Join(dir, "gw.yaml"), gatewayDoc)
	write(t, filepath.Join(elsewhere, "svc.yaml"), fmt.Sprintf(serviceDoc, "linked"))
	if err := os.Symlink(filepath.Join(elsewhere, "svc.yaml"), filepath.Join(dir, "linked.yaml")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fifo, filepath.Join(dir, "tofifo.yaml")); err != nil {
		t.Fatal(err)
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for a reader
		if err != nil {
			return
		}
		_, _ = fmt.Fprintf(w, serviceDoc, "piped")
		_ = w.Close()
	}()
	t.Cleanup(func() { // let the writer go
		if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			<-written
			_ = r.Close()
		}
	})
	var c Cache
	for i := range 2 {
		res, src, err := c.Load(dir)
		c.Commit()
		if err != nil {
			t.Fatalf("load %d: %v", i+1, err)
		}
		if len(res.Gateways) != 1 || len(res.Services) != 1 || res.Services[0].Name != "linked" {
			t.Fatalf("load %d: %d gateways, services %v; want gw.yaml's Gateway and the linked Service only", i+1, len(res.Gateways), res.Services)
		}
		for _, f := range []string{"fifo.yaml", "tofifo.yaml"} {
			want := filepath.Join(dir, f) + ": not a regular file (a named pipe): only regular files are read in a directory"
			if !strings.Contains(strings.Join(src.Warnings, "\n"), want) {
				t.Errorf("load %d: warnings %q lack %q", i+1, src.Warnings, want)
			}
		}
	}
}

// TestNamedPipeReadOnce: a pipe named in the paths (the shell's -f <(cat extra.yaml)) is read
// once: a later reload keeps what it gave, where reading it again would give nothing. A named
// pipe without a writer reads as empty, without waiting for one.
func TestNamedPipeReadOnce(t *testing.T) {
	if _, err := os.Stat("/dev/fd/0"); err != nil || runtime.GOOS != "linux" {
		t.Skip("no /dev/fd")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString(gatewayDoc); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	pipe := fmt.Sprintf("/dev/fd/%d", r.Fd())
	var c Cache
	for i := range 2 {
		res, _, err := c.Load(pipe)
		c.Commit()
		if err != nil || len(res.Gateways) != 1 {
			t.Fatalf("load %d: %d gateways, error %v; want the pipe's Gateway", i+1, len(res.Gateways), err)
		}
	}

	fifo := filepath.Join(t.TempDir(), "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if res, _, err := Load(fifo); err != nil || len(res.Gateways) != 0 {
		t.Fatalf("a named pipe without a writer: %d gateways, error %v; want nothing", len(res.Gateways), err)
	}
}

// TestFileSizeLimit: a file larger than MaxFileBytes is refused, naming it and the limit, and not
// read (a device named explicitly too); a served file that grows beyond it keeps its last good
// version.
func TestFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	gw, big := filepath.Join(dir, "gw.yaml"), filepath.Join(t.TempDir(), "big.yaml")
	write(t, gw, gatewayDoc)
	write(t, big, "")
	if err := os.Truncate(big, MaxFileBytes+1); err != nil {
		t.Fatal(err)
	}
	paths := []string{big}
	if runtime.GOOS == "linux" {
		paths = append(paths, "/dev/zero")
	}
	for _, p := range paths {
		_, _, err := Load(p)
		if want := p + ": larger than the 16 MiB a manifest file may hold (MaxFileBytes): not read"; err == nil || err.Error() != want {
			t.Errorf("Load(%s): %v\nwant %s", p, err, want)
		}
	}

	var c Cache
	if res, _, err := c.Load(dir); err != nil || len(res.Gateways) != 1 {
		t.Fatalf("first load: %d gateways, %v", len(res.Gateways), err)
	}
	c.Commit()
	if err := os.Truncate(gw, MaxFileBytes+1); err != nil {
		t.Fatal(err)
	}
	res, src, err := c.Load(dir)
	if err == nil || !strings.Contains(err.Error(), gw+": larger than the 16 MiB") || len(res.Gateways) != 1 ||
		len(src.Kept) != 1 || !strings.Contains(src.Kept[0], "serving its last good version") {
		t.Fatalf("grown beyond the limit: %d gateways, kept %q, error %v; want the last good Gateway kept", len(res.Gateways), src.Kept, err)
	}
}

// TestFileNamedTwice: a file named twice (itself and in its directory, or through a link) is
// read once.
func TestFileNamedTwice(t *testing.T) {
	dir := t.TempDir()
	gw := filepath.Join(dir, "gw.yaml")
	write(t, gw, gatewayDoc)
	link := filepath.Join(t.TempDir(), "link.yaml")
	if err := os.Symlink(gw, link); err != nil {
		t.Fatal(err)
	}
	res, src, err := Load(dir, gw, link, dir+"/./gw.yaml")
	if err != nil || len(res.Gateways) != 1 {
		t.Fatalf("%d gateways, error %v; want the Gateway once", len(res.Gateways), err)
	}
	if want := link + ": the same file as " + gw + ", which is read once"; !strings.Contains(strings.Join(src.Warnings, "\n"), want) {
		t.Errorf("warnings %q lack %q", src.Warnings, want)
	}
}
