package sim

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/hexride/hexride/infra/auth"
)

// incoming turns what a client context would send into what a server sees.
func incoming(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		t.Fatal("no outgoing metadata")
	}
	return metadata.NewIncomingContext(context.Background(), md)
}

func TestCredentials(t *testing.T) {
	key, err := auth.GenerateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dev, err := DevCredentials(key)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewJWTAuthenticator(auth.DefaultJWTConfig(auth.DevIssuer, auth.DevAudience), auth.StaticKeys{Set: key.KeySet()})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := auth.GenerateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := auth.NewJWTAuthenticator(auth.DefaultJWTConfig(auth.DevIssuer, auth.DevAudience), auth.StaticKeys{Set: otherKey.KeySet()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		creds   Credentials
		server  auth.Authenticator
		wantErr bool
	}{
		{"dev token verified with the dev key", dev, verifier, false},
		{"dev token refused by another key", dev, stranger, true},
		{"dev token is not a header principal", dev, auth.HeaderAuthenticator{}, true},
		{"header principal", HeaderCredentials, auth.HeaderAuthenticator{}, false},
		{"header principal is not a token", HeaderCredentials, verifier, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []auth.Principal{
				{Role: auth.RoleRider, Subject: "sim-rider-1"},
				{Role: auth.RoleDriver, Subject: "sim-driver-7"},
			} {
				ctx, err := tt.creds(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tt.server.Authenticate(incoming(t, ctx))
				if tt.wantErr {
					if err == nil {
						t.Errorf("%v: authenticated as %v, want an error", p, got)
					}
					continue
				}
				if err != nil || got != p {
					t.Errorf("%v: Authenticate = %v, %v", p, got, err)
				}
			}
		})
	}
}

func TestConfigAs(t *testing.T) {
	p := auth.Principal{Role: auth.RoleDriver, Subject: "d1"}
	t.Run("nil credentials send the header", func(t *testing.T) {
		rec := newRecorder()
		ctx := Config{}.as(context.Background(), rec, p)
		got, err := auth.HeaderAuthenticator{}.Authenticate(incoming(t, ctx))
		if err != nil || got != p {
			t.Errorf("Authenticate = %v, %v; want %v", got, err, p)
		}
		if s := rec.snapshot(); s.Errors != 0 {
			t.Errorf("Errors = %d, want 0", s.Errors)
		}
	})
	t.Run("a credential failure is an error and the call goes without", func(t *testing.T) {
		rec := newRecorder()
		type marker struct{}
		parent := context.WithValue(context.Background(), marker{}, 1)
		cfg := Config{Credentials: func(ctx context.Context, _ auth.Principal) (context.Context, error) {
			return auth.OutgoingContext(ctx, p), errors.New("key gone")
		}}
		ctx := cfg.as(parent, rec, p)
		if ctx != parent {
			t.Error("as returned a different context after a credential failure")
		}
		if _, ok := metadata.FromOutgoingContext(ctx); ok {
			t.Error("a failed credential still put metadata on the call")
		}
		s := rec.snapshot()
		if s.Errors != 1 || len(s.ErrorSamples) != 1 || s.ErrorSamples[0] != "key gone" {
			t.Errorf("Errors = %d %q, want 1 [key gone]", s.Errors, s.ErrorSamples)
		}
	})
}
