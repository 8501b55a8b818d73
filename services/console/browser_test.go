package console_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// chromiumPath is Debian's chromium; the browser test never downloads one.
const chromiumPath = "/usr/bin/chromium"

// TestBrowser builds hexride, runs `hexride dev --sim` as a real process on
// free loopback ports, and drives the console in headless chromium through
// playwright-core (web/e2e/console.mjs): hexes, drivers and trips appear
// and change, a dispatcher cancels a trip and takes a driver offline, and a
// screenshot is kept (its path is logged). Missing chromium or node_modules
// fail the test with the command that installs them
// (web/install-browser-deps.sh does both).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test runs a real process and chromium")
	}
	root := moduleRoot(t)
	web := filepath.Join(root, "services", "console", "web")
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run `apt-get update && apt-get install -y chromium` (or services/console/web/install-browser-deps.sh)", chromiumPath)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is missing: install Node.js 20 (the browser test runs playwright-core under node)")
	}
	if _, err := os.Stat(filepath.Join(web, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatal("playwright-core is missing: run `npm ci --prefix services/console/web` (or services/console/web/install-browser-deps.sh)")
	}

	bin := filepath.Join(t.TempDir(), "hexride")
	build := exec.Command("go", "build", "-o", bin, "./cmd/hexride")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	url, stop := startDev(t, bin)
	defer stop()
	t.Logf("console at %s", url)

	shot := filepath.Join(artifactDir(t), "console.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, node, filepath.Join("e2e", "console.mjs"), url, shot)
	run.Dir = web
	run.Env = append(os.Environ(), "CHROMIUM="+chromiumPath)
	var stdout, stderr bytes.Buffer
	run.Stdout, run.Stderr = &stdout, &stderr
	start := time.Now()
	err = run.Run()
	t.Logf("browser check (%s):\n%s%s", time.Since(start).Round(time.Millisecond), stderr.String(), stdout.String())
	if err != nil {
		t.Fatalf("browser check failed: %v", err)
	}
	if _, err := os.Stat(shot); err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	t.Logf("screenshot: %s", shot)
}

// artifactDir is where the screenshot goes: $HEXRIDE_ARTIFACTS, the test's
// artifact directory under `go test -artifacts`, or else a directory under
// the system temp dir that outlives the test (logged).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("HEXRIDE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	d, err := os.MkdirTemp("", "hexride-console-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

var consoleURL = regexp.MustCompile(`dispatcher console: (http://\S+)`)

// startDev runs `hexride dev --sim` on free loopback ports and returns the
// console URL it prints; stop interrupts it and waits for a clean exit.
func startDev(t *testing.T, bin string) (url string, stop func()) {
	t.Helper()
	cmd := exec.Command(bin, "dev", "--sim", "--sim-rate", "2", "--addr", "127.0.0.1:0", "--http", "127.0.0.1:0", "--key-dir", t.TempDir())
	out := &watchWriter{want: consoleURL, found: make(chan string, 1)}
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("hexride dev exited: %v\n%s", err, tail(stderr.String()))
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("hexride dev did not stop on interrupt\n%s", tail(stderr.String()))
		}
	}
	select {
	case url = <-out.found:
		return url, stop
	case err := <-done:
		t.Fatalf("hexride dev exited early: %v\n%s", err, tail(stderr.String()))
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("hexride dev printed no console URL\n%s", tail(stderr.String()))
	}
	return "", nil
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// watchWriter collects a process's output and reports the first match of
// want's first group.
type watchWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  *regexp.Regexp
	found chan string
	sent  bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent {
		if m := w.want.FindStringSubmatch(w.buf.String()); m != nil {
			w.sent = true
			w.found <- strings.TrimSpace(m[1])
		}
	}
	return len(p), nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
