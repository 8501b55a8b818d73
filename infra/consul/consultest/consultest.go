// Package consultest runs a real Consul agent (`consul agent -dev`) for
// tests and e2e harnesses.
//
// The binary is the first of: $HEXRIDE_CONSUL_BIN; `consul` on PATH;
// <repo>/bin/consul; else it is built once from the Go module proxy with
// <repo>/tools/consul/go.mod into <repo>/bin/consul (a few minutes the
// first time, cached after; tools/consul/build.sh does the same). When no
// binary can be found or built, Start fails the test: it never skips.
package consultest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvBin names an explicit consul binary.
const EnvBin = "HEXRIDE_CONSUL_BIN"

const modulePath = "github.com/hexride/hexride"

// Agent is a running `consul agent -dev` on loopback ports. Its state is in
// memory: a restart starts empty.
type Agent struct {
	bin     string
	dir     string // holds agent.log
	ports   ports
	logPath string

	// extraClients are addresses the HTTP API listens on besides 127.0.0.1.
	extraClients []string
	opts         Options

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	log     *os.File
	stopped bool
}

type ports struct {
	http, serfLAN, serfWAN, server int
}

// Start starts an agent for one test and stops it in tb.Cleanup. Failures
// are fatal.
func Start(tb testing.TB) *Agent {
	tb.Helper()
	return StartWithClientAddrs(tb)
}

// StartWithClientAddrs is Start with the HTTP API also listening on each
// of extra (IP addresses that exist on this host, e.g. one a test can cut
// off from a network namespace); AddrOn names the API on one of them.
func StartWithClientAddrs(tb testing.TB, extra ...string) *Agent {
	tb.Helper()
	a, err := startAgent(extra)
	if err != nil {
		tb.Fatalf("consultest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("consultest: consul agent log (tail):\n%s", tail(a.logPath, 40))
		}
		if err := a.Stop(); err != nil {
			tb.Errorf("consultest: stop: %v", err)
		}
	})
	return a
}

// Options start an agent in its own datacenter, possibly in a network
// namespace: what a multi-datacenter (WAN-federated) test needs.
type Options struct {
	// Datacenter names the agent's datacenter; empty is Consul's "dc1".
	Datacenter string
	// BindIP is the address the agent binds, advertises and serves its
	// HTTP API on (besides 127.0.0.1); empty means 127.0.0.1 only.
	BindIP string
	// Prefix runs the agent through a command that execs it in place,
	// e.g. ip netns exec NS.
	Prefix []string
}

// StartWithOptions starts an agent with opts for one test and stops it in
// tb.Cleanup. Failures are fatal.
func StartWithOptions(tb testing.TB, opts Options) *Agent {
	tb.Helper()
	a, err := startAgentOpts(nil, opts)
	if err != nil {
		tb.Fatalf("consultest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("consultest: consul agent %s log (tail):\n%s", opts.Datacenter, tail(a.logPath, 40))
		}
		if err := a.Stop(); err != nil {
			tb.Errorf("consultest: stop: %v", err)
		}
	})
	return a
}

// JoinWAN joins a's server to other's over the WAN (both must be able to
// reach each other's serf WAN port), federating their datacenters, and
// waits until a sees other's datacenter.
func (a *Agent) JoinWAN(other *Agent) error {
	target := net.JoinHostPort(other.bindIP(), strconv.Itoa(other.ports.serfWAN))
	argv := append(append([]string{}, a.opts.Prefix...), a.bin, "join", "-wan", "-http-addr=http://"+a.Addr(), target)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("consul join -wan %s: %v: %s", target, err, bytes.TrimSpace(out))
	}
	return a.waitDatacenter(other.Datacenter(), 30*time.Second)
}

// waitDatacenter polls the catalog until it lists dc.
func (a *Agent) waitDatacenter(dc string, timeout time.Duration) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if resp, err := client.Get("http://" + a.Addr() + "/v1/catalog/datacenters"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if strings.Contains(last, `"`+dc+`"`) {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("consul %s: datacenter %s not federated after %v (datacenters: %s)", a.Datacenter(), dc, timeout, last)
}

// WANAddr is the agent's serf WAN address, "ip:port".
func (a *Agent) WANAddr() string {
	return net.JoinHostPort(a.bindIP(), strconv.Itoa(a.ports.serfWAN))
}

// Datacenter is the agent's datacenter name.
func (a *Agent) Datacenter() string {
	if a.opts.Datacenter == "" {
		return "dc1"
	}
	return a.opts.Datacenter
}

func (a *Agent) bindIP() string {
	if a.opts.BindIP == "" {
		return "127.0.0.1"
	}
	return a.opts.BindIP
}

// StartAgent starts an agent and waits until it has elected itself leader.
// The caller must Stop it: use it from TestMain (one agent per test binary)
// or from a long-lived e2e harness.
func StartAgent() (*Agent, error) { return startAgent(nil) }

func startAgent(extra []string) (*Agent, error) { return startAgentOpts(extra, Options{}) }

func startAgentOpts(extra []string, opts Options) (*Agent, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hexride-consul-")
	if err != nil {
		return nil, err
	}
	if opts.BindIP != "" {
		extra = append(extra, opts.BindIP)
	}
	a := &Agent{bin: bin, dir: dir, logPath: filepath.Join(dir, "agent.log"), extraClients: extra, opts: opts}
	var errs []error
	for range 3 { // a free port can be taken between probing and binding
		if a.ports, err = freePorts(); err != nil {
			return nil, errors.Join(err, os.RemoveAll(dir))
		}
		if err = a.start(); err == nil {
			return a, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(append(errs, os.RemoveAll(dir))...)
}

// Addr is the agent's HTTP API address, "127.0.0.1:port" (on its BindIP
// when started with one).
func (a *Agent) Addr() string { return a.AddrOn(a.bindIP()) }

// AddrOn is the agent's HTTP API address on ip (127.0.0.1 or one of the
// extra client addresses it was started with).
func (a *Agent) AddrOn(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(a.ports.http)) }

// LogPath is the agent's log file (kept until Stop).
func (a *Agent) LogPath() string { return a.logPath }

func (a *Agent) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	node := "hexride-test"
	args := []string{"agent", "-dev",
		"-bind=" + a.bindIP(), "-client=" + strings.Join(append([]string{"127.0.0.1"}, a.extraClients...), " "), "-advertise=" + a.bindIP(),
	}
	if dc := a.opts.Datacenter; dc != "" {
		node += "-" + dc
		args = append(args, "-datacenter="+dc, "-advertise-wan="+a.bindIP())
	}
	args = append(args, "-node="+node,
		"-http-port="+strconv.Itoa(a.ports.http),
		"-serf-lan-port="+strconv.Itoa(a.ports.serfLAN),
		"-serf-wan-port="+strconv.Itoa(a.ports.serfWAN),
		"-server-port="+strconv.Itoa(a.ports.server),
		// Unused here; off so they cannot collide (-dev would take 8502/8503).
		"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1", "-https-port=-1",
	)
	argv := append(append(append([]string{}, a.opts.Prefix...), a.bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", a.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	a.cmd, a.exited, a.log, a.stopped = cmd, exited, logf, false

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.waitReady(ctx); err != nil {
		a.stopLocked()
		return fmt.Errorf("consul agent on %s not ready: %w\n--- %s (tail) ---\n%s", a.Addr(), err, a.logPath, tail(a.logPath, 30))
	}
	return nil
}

// waitReady polls until the agent answers with a leader.
func (a *Agent) waitReady(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	url := "http://" + a.Addr() + "/v1/status/leader"
	var last error
	for {
		select {
		case <-a.exited:
			return fmt.Errorf("agent exited: %v", a.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Get(url)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		leader := strings.Trim(strings.TrimSpace(string(body)), `"`)
		if resp.StatusCode == http.StatusOK && leader != "" {
			return nil
		}
		last = fmt.Errorf("status %d, leader %q", resp.StatusCode, leader)
	}
}

// Restart stops the agent and starts a fresh one (empty state) on the same
// ports: what a client sees when its local agent restarts.
func (a *Agent) Restart() error {
	if err := a.Kill(); err != nil {
		return err
	}
	return a.start()
}

// Kill stops the agent process but keeps its ports and log for Restart.
func (a *Agent) Kill() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopLocked()
}

func (a *Agent) stopLocked() error {
	if a.stopped || a.cmd == nil {
		return nil
	}
	a.stopped = true
	// SIGINT makes a dev agent leave and exit within a second or two.
	_ = a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
	return a.log.Close()
}

// Stop stops the agent and removes its files. It is idempotent.
func (a *Agent) Stop() error {
	err := a.Kill()
	if a.dir != "" {
		err = errors.Join(err, os.RemoveAll(a.dir))
		a.dir = ""
	}
	return err
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts picks ports that are free on 127.0.0.1 for TCP (and UDP, for
// serf).
func freePorts() (ports, error) {
	var got []int
	var holds []io.Closer
	defer func() {
		for _, h := range holds {
			h.Close()
		}
	}()
	for len(got) < 4 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports{}, err
		}
		holds = append(holds, l)
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // UDP side taken: try another
		}
		holds = append(holds, u)
		got = append(got, p)
	}
	return ports{http: got[0], serfLAN: got[1], serfWAN: got[2], server: got[3]}, nil
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of a consul binary, building it on first use (see
// the package doc).
func Binary() (string, error) {
	binOnce.Do(func() { binPath, binErr = findOrBuild() })
	return binPath, binErr
}

func findOrBuild() (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBin, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("no consul binary (set %s or put consul on PATH), and cannot build one: %w", EnvBin, err)
	}
	return buildConsul(root)
}

// buildConsul builds <root>/bin/consul from <root>/tools/consul/go.mod
// unless it exists. A file lock keeps parallel test binaries from building
// it twice.
func buildConsul(root string) (string, error) {
	out := filepath.Join(root, "bin", "consul")
	if isExec(out) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(root, "bin", ".consul-build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExec(out) { // built by another process while we waited
		return out, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	cmd := exec.Command(goBin, "build", "-o", tmp, "github.com/hashicorp/consul")
	cmd.Dir = filepath.Join(root, "tools", "consul")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	fmt.Fprintf(os.Stderr, "consultest: building %s from %s/go.mod (first build takes minutes)\n", out, cmd.Dir)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("no consul binary (set %s or put consul on PATH), and building it failed: %s: %w\n%s",
			EnvBin, strings.Join(cmd.Args, " "), err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "consultest: built %s in %v\n", out, time.Since(start).Round(time.Second))
	return out, nil
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// RepoRoot finds the hexride module root by walking up from the working
// directory, then from this source file.
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isModule(b, modulePath) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("no go.mod of module %s above %v", modulePath, starts)
}

func isModule(gomod []byte, path string) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == path
		}
	}
	return false
}
