package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/hexride/hexride/infra/auth"
)

// server is a child process the bench started and owns.
type server struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	logPath string
	log     *os.File
	done    chan struct{}
	waitErr error
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// exited reports whether the process has ended.
func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// alive returns an error (with the log's tail) if the process has exited.
func (s *server) alive() error {
	if !s.exited() {
		return nil
	}
	return fmt.Errorf("%s exited: %v\n%s", s.name, s.waitErr, s.tail(2000))
}

// tail returns the end of the process's log.
func (s *server) tail(n int) string {
	data, _ := os.ReadFile(s.logPath)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// stop ends the process: SIGTERM, then SIGKILL after grace.
func (s *server) stop(grace time.Duration) {
	if s == nil || s.cmd.Process == nil {
		return
	}
	if !s.exited() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(grace):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	s.log.Close()
}

// startChild starts bin with args, stderr (and stdout, unless stdout is
// given) to a log file in dir. The child gets SIGKILL if this process dies.
func startChild(name, dir, bin string, args []string, env []string, stdout io.Writer) (*server, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = logFile
	cmd.Stdout = logFile
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(logFile, stdout)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, logPath: logPath, log: logFile, done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// childEnv is this process's environment without HEXRIDE_* and OTEL_*
// variables, so a child runs exactly the flags the bench gives it.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HEXRIDE_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

var servingLine = regexp.MustCompile(`hexride serving \S+ on (\S+)`)

// hexrideArgs are the serve flags of a measured hexride process: matching,
// trip and driver in one process (in-process discovery needs every service
// a node calls to run in it), JWT auth trusting the bench's dev key.
func hexrideArgs(keyDir string, ttl time.Duration) []string {
	return []string{"serve",
		"--services", "matching,trip,driver",
		"--addr", "127.0.0.1:0",
		"--http", "",
		"--jwks-file", filepath.Join(keyDir, auth.DevJWKSFile),
		"--jwt-issuer", auth.DevIssuer,
		"--jwt-audience", auth.DevAudience,
		"--service-key-dir", keyDir,
		"--driver-ttl", ttl.String(),
		"--drain-wait", "0s",
		"--stop-timeout", "2s",
		"--log-level", "warn",
		"--trace-exporter", "none",
	}
}

// startHexride starts `hexride serve` and waits for its serving line.
func startHexride(ctx context.Context, name, dir, bin, keyDir string, ttl time.Duration) (*server, error) {
	return startListening(ctx, name, dir, bin, hexrideArgs(keyDir, ttl), servingLine)
}

// startListening starts bin with args and waits for the line that gives
// its address (the first submatch of serving).
func startListening(ctx context.Context, name, dir, bin string, args []string, serving *regexp.Regexp) (*server, error) {
	pr, pw := io.Pipe()
	s, err := startChild(name, dir, bin, args, childEnv(), pw)
	if err != nil {
		return nil, err
	}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := serving.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() { <-s.done; pw.Close() }()
	select {
	case s.addr = <-addrCh:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s exited before serving: %v\n%s", name, s.waitErr, s.tail(2000))
	case <-time.After(30 * time.Second):
		s.stop(time.Second)
		return nil, fmt.Errorf("%s did not start within 30 s\n%s", name, s.tail(2000))
	case <-ctx.Done():
		s.stop(time.Second)
		return nil, ctx.Err()
	}
}

// RedisInstallHint is how to get redis-server on Debian.
const RedisInstallHint = "apt-get install -y redis-server"

// FindRedis returns the redis-server binary: path if given, else the one
// on PATH, else /usr/bin/redis-server.
func FindRedis(path string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("redis-server %s: %w (install it with: %s)", path, err, RedisInstallHint)
		}
		return path, nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", fmt.Errorf("redis-server not found on PATH or at /usr/bin/redis-server: install Debian's package with: %s", RedisInstallHint)
}

// RedisVersion is redis-server --version's first line.
func RedisVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// freePort returns a loopback port nobody listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func redisArgs(port, maxClients int) []string {
	return []string{
		"--port", fmt.Sprint(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--maxclients", fmt.Sprint(maxClients),
		"--daemonize", "no",
	}
}

// startRedis starts redis-server on a free port and waits until it answers.
func startRedis(ctx context.Context, name, dir, bin string, maxClients int) (*server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := startChild(name, dir, bin, redisArgs(port, maxClients), os.Environ(), nil)
		if err != nil {
			return nil, err
		}
		s.addr = fmt.Sprintf("127.0.0.1:%d", port)
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && !s.exited() {
			if err = pingRedis(s.addr); err == nil {
				return s, nil
			}
			select {
			case <-ctx.Done():
				s.stop(time.Second)
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		lastErr = fmt.Errorf("%s did not answer on %s: %v\n%s", name, s.addr, err, s.tail(2000))
		s.stop(time.Second) // the port may have been taken meanwhile: try another
	}
	return nil, lastErr
}

// pingRedis sends one inline PING.
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New("unexpected answer " + strings.TrimSpace(line))
	}
	return nil
}
