package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestDevKeyLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hexride", "dev")
	if _, err := LoadDevKey(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadDevKey on empty dir: %v", err)
	}
	k, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {filepath.Join(dir, DevKeyFile), 0o600}, {k.JWKSPath(), 0o644}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.mode {
			t.Errorf("%s mode %v, want %v", c.path, fi.Mode().Perm(), c.mode)
		}
	}
	again, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Kid != k.Kid || !again.Private.Equal(k.Private) {
		t.Fatal("LoadOrCreateDevKey made a second key")
	}

	// The published jwks.json verifies what the key mints.
	src, err := NewJWKSSource(context.Background(), JWKSConfig{File: k.JWKSPath()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewJWTAuthenticator(DefaultJWTConfig(DevIssuer, DevAudience), src)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Mint(k.Private, k.Kid, DevIssuer, DevAudience, RoleDispatcher, "ops-1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.Verify(tok); err != nil || p != (Principal{RoleDispatcher, "ops-1"}) {
		t.Fatalf("Verify = %v, %v", p, err)
	}

	// A lost jwks.json is rewritten on load.
	os.Remove(k.JWKSPath())
	if _, err := LoadDevKey(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.JWKSPath()); err != nil {
		t.Fatal("jwks.json not rewritten")
	}

	// Regenerating rotates: old tokens stop verifying after a reload.
	k2, err := GenerateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Kid == k.Kid {
		t.Fatal("GenerateDevKey kept the key")
	}
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(tok); err == nil {
		t.Fatal("token of the replaced key still verifies")
	}

	// A key readable by others is refused.
	if err := os.Chmod(filepath.Join(dir, DevKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDevKey(dir); err == nil {
		t.Fatal("world-readable key accepted")
	}
}

func TestLoadOrCreateDevKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	kids := make([]string, 8)
	errs := make([]error, 8)
	for i := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateDevKey(dir)
			errs[i] = err
			if err == nil {
				kids[i] = k.Kid
			}
		}()
	}
	wg.Wait()
	for i := range kids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if kids[i] != kids[0] {
			t.Fatalf("callers got different keys: %v", kids)
		}
	}
	k, _ := LoadDevKey(dir)
	set, err := ParseJWKS(mustRead(t, k.JWKSPath()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := set.Lookup(kids[0]); !ok {
		t.Fatal("jwks.json does not hold the winning key")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDefaultDevKeyDir(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if d, err := DefaultDevKeyDir(); err != nil || d != "/xdg/hexride/dev" {
		t.Fatalf("with XDG_CONFIG_HOME: %q %v", d, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d, err := DefaultDevKeyDir(); err != nil || d != "/home/u/.config/hexride/dev" {
		t.Fatalf("from HOME: %q %v", d, err)
	}
}

func TestMintArguments(t *testing.T) {
	k := mustKeys(t)
	tests := []struct {
		name string
		fn   func() error
		want error
	}{
		{"ok", func() error { _, err := Mint(k.ed, "k", "i", "a", RoleRider, "s", time.Minute, testNow); return err }, nil},
		{"no kid", func() error { _, err := Mint(k.ed, "", "i", "a", RoleRider, "s", time.Minute, testNow); return err }, ErrMintArg},
		{"bad role", func() error { _, err := Mint(k.ed, "k", "i", "a", "root", "s", time.Minute, testNow); return err }, ErrMintArg},
		{"no subject", func() error { _, err := Mint(k.ed, "k", "i", "a", RoleRider, "", time.Minute, testNow); return err }, ErrMintArg},
		{"zero ttl", func() error { _, err := Mint(k.ed, "k", "i", "a", RoleRider, "s", 0, testNow); return err }, ErrMintArg},
		{"nil key", func() error { _, err := Mint(nil, "k", "i", "a", RoleRider, "s", time.Minute, testNow); return err }, ErrMintKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMinterCachesUntilNearExpiry(t *testing.T) {
	k := mustKeys(t)
	now := testNow
	m, err := NewMinter(MinterConfig{Key: k.ed, Kid: k.edKid, Issuer: testIss, Audience: testAud, TTL: 10 * time.Minute, MaxCached: 4, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	rider := Principal{RoleRider, "r1"}
	t1, _ := m.Token(rider)
	now = now.Add(7 * time.Minute)
	if t2, _ := m.Token(rider); t2 != t1 {
		t.Fatal("re-minted a fresh token")
	}
	now = now.Add(2 * time.Minute) // within the last fifth
	t3, _ := m.Token(rider)
	if t3 == t1 {
		t.Fatal("kept a token about to expire")
	}
	a := newTestAuthenticator(t, JWTConfig{Now: func() time.Time { return now }})
	if p, err := a.Verify(t3); err != nil || p != rider {
		t.Fatalf("minted token: %v %v", p, err)
	}
	if t4, _ := m.Token(Principal{RoleDriver, "r1"}); t4 == t3 {
		t.Fatal("principals share a token")
	}
	for i := range 20 {
		if _, err := m.Token(Principal{RoleRider, string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	n := len(m.cache)
	m.mu.Unlock()
	if n > 4 {
		t.Fatalf("cache holds %d > MaxCached 4", n)
	}
	if _, err := NewMinter(MinterConfig{Key: k.ed}); err == nil {
		t.Fatal("NewMinter without kid/issuer accepted")
	}
}
