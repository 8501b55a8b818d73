package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/consul/consultest"
	"github.com/hexride/hexride/infra/postgres/pgtest"
)

// readmeBlock returns the lines of the first ```sh block under heading in
// the README.
func readmeBlock(t *testing.T, heading string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	state := 0 // 0: before the heading, 1: before the block, 2: in it
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case state == 0 && l == heading:
			state = 1
		case state == 1 && l == "```sh":
			state = 2
		case state == 2 && l == "```":
			return lines
		case state == 2:
			lines = append(lines, l)
		}
	}
	t.Fatalf("README.md has no ```sh block under %q", heading)
	return nil
}

// TestReadmeProductionCommands runs the README's "Running it for real"
// lines exactly as written, in bash, with the site-specific variables they
// name set to a test deployment (a test CA and JWKS, a real Consul agent
// and PostgreSQL, every process on 127.0.0.1), then drives rides through
// the processes they started, over TLS with signed tokens.
func TestReadmeProductionCommands(t *testing.T) {
	lines := readmeBlock(t, "## Running it for real")
	sec := newTestSecurity(t)
	etc := t.TempDir()
	for name, src := range map[string]string{
		"jwks.json": sec.key.JWKSPath(), "ca.crt": sec.server.CAFile,
		"server.crt": sec.server.CertFile, "server.key": sec.server.KeyFile,
		"service.crt": sec.client.CertFile, "service.key": sec.client.KeyFile,
	} {
		if err := os.Symlink(src, filepath.Join(etc, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(etc, "quote.key"), []byte(testQuoteKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &platform{consul: consultest.Start(t), dsn: pgtest.DSN(t), sec: sec}
	bin := hexrideBinary(t)
	env := append(os.Environ(),
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"DB="+p.dsn, "CONSUL="+p.consul.Addr(), "ETC="+etc, "ISSUER="+auth.DevIssuer, "HOST=127.0.0.1",
	)

	var exports []string
	serves := 0
	for _, l := range lines {
		switch {
		case strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "export "):
			exports = append(exports, l)
		case strings.HasPrefix(l, "hexride serve "):
			// The process runs until the test ends: exec keeps its pid
			// hexride's, so the harness can signal and watch it.
			script := strings.Join(append(exports, "exec "+l), "\n")
			pr := startCommand(t, fmt.Sprintf("readme-serve-%d", serves), []string{"bash", "-euc", script}, env)
			t.Logf("%s → serving on %s", l, pr.addr)
			switch {
			case strings.Contains(l, "--services matching"):
				p.matching = append(p.matching, pr)
			case strings.Contains(l, "--services trip"):
				p.trip = pr
			case strings.Contains(l, "rider,driver"):
				p.riders, p.drivers = append(p.riders, pr), append(p.drivers, pr)
			}
			serves++
		case strings.HasPrefix(l, "hexride "):
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cmd := exec.CommandContext(ctx, "bash", "-euc", strings.Join(append(exports, l), "\n"))
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("%s: %v\n%s", l, err, out)
			}
			t.Logf("%s → %s", l, strings.TrimSpace(lastLine(string(out))))
		default:
			t.Fatalf("the README's production block has a line this test does not know how to run: %q", l)
		}
	}
	if p.trip == nil || len(p.matching) == 0 || len(p.riders) == 0 {
		t.Fatalf("the README's commands did not start trip, matching, rider and driver (%d serve lines)", serves)
	}
	for _, m := range p.matching {
		p.waitMembers(t, m.addr, len(p.matching), 30*time.Second)
	}

	cfg := p.simConfig(t)
	cfg.Drivers, cfg.Requests, cfg.Rate = 10, 5, 5
	cfg.RiderCancelProbability, cfg.AcceptProbability = 0, 1
	cfg.Duration, cfg.Grace = 20*time.Second, 60*time.Second
	cfg.DriveTime, cfg.ReplyDelay = 300*time.Millisecond, 50*time.Millisecond
	s := <-runSim(t, cfg)
	t.Logf("rides through the README's deployment: %+v", s)
	if s.Completed == 0 || s.Lost != 0 || s.Errors != 0 {
		t.Errorf("completed %d, lost %d, errors %d %q: want rides completing, none lost, no error", s.Completed, s.Lost, s.Errors, s.ErrorSamples)
	}
}
