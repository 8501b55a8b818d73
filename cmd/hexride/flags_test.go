package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/hexride/hexride/services/matching"
	"github.com/hexride/hexride/services/node"
)

func TestApplyEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	consul := fs.String("consul", "", "")
	addr := fs.String("addr", "a", "")
	res := fs.Int("partition-res", 6, "")
	if err := fs.Parse([]string{"--addr", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HEXRIDE_CONSUL": "127.0.0.1:8500", "HEXRIDE_ADDR": "from-env", "HEXRIDE_PARTITION_RES": "5"}
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *consul != "127.0.0.1:8500" || *addr != "from-flag" || *res != 5 {
		t.Fatalf("consul %q addr %q res %d: env must fill unset flags only", *consul, *addr, *res)
	}
	env["HEXRIDE_PARTITION_RES"] = "six"
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.Int("partition-res", 6, "")
	if err := applyEnv(fs2, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "HEXRIDE_PARTITION_RES") {
		t.Fatalf("bad env value: %v", err)
	}
}

// TestServeRejectsBadConfig: serve validates its configuration before it
// starts anything and says what is wrong.
func TestServeRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want error
		text string
	}{
		{"unknown service", []string{"--services", "billing"}, node.ErrUnknownService, "billing"},
		{"no authentication", []string{"--services", "trip"}, node.ErrNoAuth, "JWKS"},
		{"tls without its key", []string{"--services", "trip", "--jwks-file", "k", "--jwt-issuer", "i", "--jwt-audience", "a", "--service-key-dir", "d", "--tls-cert", "c.pem", "--tls-ca", "ca.pem"}, node.ErrPartialTLS, "TLS"},
		{"rider without discovery", []string{"--services", "rider", "--quote-key", strings.Repeat("ab", 32)}, node.ErrNeedsDiscovery, "rider calls"},
		{"short quote key", []string{"--quote-key", "abcd"}, node.ErrShortQuoteKey, "quote key"},
		{"bad quote key hex", []string{"--quote-key", "zz"}, nil, "--quote-key"},
		{"wildcard without advertise", []string{"--services", "trip", "--addr", "0.0.0.0:7070"}, node.ErrBadAddr, "--advertise"},
		{"nats not a nats URL", []string{"--services", "trip", "--nats", "http://127.0.0.1:4222"}, node.ErrBadNATS, "--nats"},
		{"nats without a port", []string{"--services", "trip", "--nats", "nats://127.0.0.1"}, node.ErrBadNATS, "--nats"},
		{"unknown dispatch mode", []string{"--services", "trip", "--dispatch-mode", "auction"}, matching.ErrBadMode, "--dispatch-mode"},
		{"batch window too short", []string{"--services", "trip", "--batch-window", "500ms"}, matching.ErrBadWindow, "--batch-window"},
		{"batch window too long", []string{"--services", "trip", "--dispatch-mode", "batched", "--batch-window", "4s"}, matching.ErrBadWindow, "--batch-window"},
		{"bad log level", []string{"--services", "trip", "--log-level", "loud"}, nil, "log level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := serveCmd(context.Background(), tt.args, &out, &errOut)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.text)
			}
		})
	}
}

// TestDevRejectsBadDispatch: dev takes --dispatch-mode and --batch-window
// too and refuses bad values, naming the flag, before it starts anything.
func TestDevRejectsBadDispatch(t *testing.T) {
	tests := []struct {
		args []string
		want error
		text string
	}{
		{[]string{"--dispatch-mode", "auction"}, matching.ErrBadMode, "--dispatch-mode"},
		{[]string{"--dispatch-mode", "batched", "--batch-window", "10s"}, matching.ErrBadWindow, "--batch-window"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			var out, errOut bytes.Buffer
			err := devCmd(context.Background(), append([]string{"--http", "", "--key-dir", dir}, tt.args...), &out, &errOut)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.text)
			}
		})
	}
}
