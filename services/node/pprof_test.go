package node

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/auth"
)

// TestPprofNeedsOperator: profiles are served only with --pprof, and only
// to a dispatcher's or a service's token.
func TestPprofNeedsOperator(t *testing.T) {
	key, err := auth.GenerateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(Trip)
	cfg.HTTPAddr, cfg.Pprof = "127.0.0.1:0", true
	cfg.Security = Security{JWKSFile: key.JWKSPath(), Issuer: auth.DevIssuer, Audience: auth.DevAudience, ServiceKeyDir: key.Dir}
	n, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	}()
	token := func(role auth.Role) string {
		tok, err := auth.Mint(key.Private, key.Kid, auth.DevIssuer, auth.DevAudience, role, "x", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name, bearer string
		want         int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"garbage token", "not-a-jwt", http.StatusUnauthorized},
		{"rider", token(auth.RoleRider), http.StatusForbidden},
		{"driver", token(auth.RoleDriver), http.StatusForbidden},
		{"dispatcher", token(auth.RoleDispatcher), http.StatusOK},
		{"service", token(auth.RoleService), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+n.HTTPAddr()+"/debug/pprof/goroutine?debug=1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestPprofOffByDefault(t *testing.T) {
	cfg := testConfig(Trip)
	cfg.HTTPAddr = "127.0.0.1:0"
	n, _ := startNodeConfig(t, cfg)
	resp, err := http.Get("http://" + n.HTTPAddr() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d without --pprof, want 404", resp.StatusCode)
	}
}
