package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/services/sim"
)

// TestSubcommandHelp: every subcommand's --help (and -h) succeeds, prints
// its usage, and shows each flag's environment variable.
func TestSubcommandHelp(t *testing.T) {
	flagLine := regexp.MustCompile(`^  --([a-z0-9-]+)`)
	for _, c := range commands() {
		for _, arg := range []string{"--help", "-h"} {
			t.Run(c.name+arg, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				if err := run(context.Background(), []string{c.name, arg}, &stdout, &stderr); err != nil {
					t.Fatalf("hexride %s %s: %v (must succeed)\n%s", c.name, arg, err, stderr.String())
				}
				usage := stderr.String()
				if !strings.Contains(usage, "usage: hexride "+c.name) {
					t.Fatalf("usage lacks its command line:\n%s", usage)
				}
				lines := strings.Split(usage, "\n")
				flags := 0
				for i, line := range lines {
					m := flagLine.FindStringSubmatch(line)
					if m == nil {
						continue
					}
					flags++
					if i+1 >= len(lines) || !strings.Contains(lines[i+1], "(env "+envName(m[1])+")") {
						t.Errorf("flag --%s does not show (env %s)", m[1], envName(m[1]))
					}
				}
				if c.name != "version" && flags == 0 {
					t.Fatalf("no flags listed:\n%s", usage)
				}
			})
		}
	}
	// A bad flag is still a usage error.
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"token", "--no-such-flag"}, &stdout, &stderr); err == nil {
		t.Fatal("an unknown flag must fail")
	}
}

// TestDevTellsTheTruth: dev's help does not claim it runs without tokens,
// and a wildcard address is refused with advice dev can follow.
func TestDevTellsTheTruth(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"dev", "--help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	help := stderr.String()
	for _, lie := range []string{"without TLS or tokens", "without tokens", "no tokens"} {
		if strings.Contains(help, lie) {
			t.Errorf("dev --help says %q; dev enforces tokens:\n%s", lie, help)
		}
	}
	if !strings.Contains(help, "token") {
		t.Errorf("dev --help does not mention that tokens are required:\n%s", help)
	}
	dir := t.TempDir()
	err := devCmd(context.Background(), []string{"--addr", "0.0.0.0:0", "--http", "", "--key-dir", dir}, &stdout, &stderr)
	if err == nil {
		t.Fatal("dev --addr 0.0.0.0:0 must fail")
	}
	if strings.Contains(err.Error(), "set --advertise") || !strings.Contains(err.Error(), "--addr 127.0.0.1") {
		t.Fatalf("err = %v: must say to give a dialable --addr, not to set a flag dev lacks", err)
	}
}

// TestTokenNeedsDevKey: token never creates a signing key; it fails
// saying where it looked and who creates the key.
func TestTokenNeedsDevKey(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nokey")
	var stdout, stderr bytes.Buffer
	err := tokenCmd(context.Background(), []string{"--key-dir", missing, "--role", "rider", "--sub", "r1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "hexride dev") {
		t.Fatalf("err = %v, want one naming %s and hexride dev", err, missing)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("token created %s (stat: %v)", missing, err)
	}
	dir := t.TempDir()
	key, err := auth.GenerateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if err := tokenCmd(context.Background(), []string{"--key-dir", dir, "--role", "rider", "--sub", "r1"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewJWTAuthenticator(auth.JWTConfig{Issuer: auth.DevIssuer, Audience: auth.DevAudience}, staticKeys{key.KeySet()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := verifier.Verify(strings.TrimSpace(stdout.String()))
	if err != nil || p.Subject != "r1" {
		t.Fatalf("minted token: %v %v", p, err)
	}
}

// TestSimVerdict: sim exits non-zero when nothing succeeded or a ride was
// lost.
func TestSimVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    sim.Stats
		ok   bool
	}{
		{"rides ended", sim.Stats{Requests: 10, Matched: 9, Completed: 9, NoDriver: 1}, true},
		{"no request succeeded", sim.Stats{Errors: 5}, false},
		{"a ride lost", sim.Stats{Requests: 10, Completed: 9, Lost: 1}, false},
	} {
		if err := simVerdict(tc.s); (err == nil) != tc.ok {
			t.Errorf("%s: simVerdict = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestVersionRevision: a binary built by make build from a git checkout
// reports the checkout's revision and whether it had local changes.
func TestVersionRevision(t *testing.T) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v): no revision to report", err)
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "hexride")
	if out, err := exec.Command("make", "-s", "-C", strings.TrimSpace(string(root)), "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("hexride version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "revision "+strings.TrimSpace(string(head))) {
		t.Fatalf("hexride version does not report revision %s:\n%s", head, out)
	}
	if !regexp.MustCompile(`(?m)^modified (true|false)$`).Match(out) || !strings.Contains(string(out), "module   github.com/hexride/hexride@") {
		t.Fatalf("hexride version lacks the module or the modified flag:\n%s", out)
	}
}

type staticKeys struct{ ks *auth.KeySet }

func (s staticKeys) Keys() *auth.KeySet { return s.ks }
