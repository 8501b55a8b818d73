package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/metadata"
)

// sign builds a token from raw claims, for cases Mint refuses to make.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func baseClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIss, "aud": testAud, "sub": "r-42", "role": "rider",
		"iat": testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(time.Hour).Unix(),
	}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestJWTVerify(t *testing.T) {
	k := mustKeys(t)
	mint := func(role Role, sub string, ttl time.Duration, now time.Time) string {
		s, err := Mint(k.ed, k.edKid, testIss, testAud, role, sub, ttl, now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaTok, err := Mint(k.rsa, k.rsaKid, testIss, testAud, RoleDispatcher, "d-1", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	edPub := []byte(k.ed.Public().(ed25519.PublicKey))
	good := mint(RoleRider, "r-1", time.Hour, testNow)
	parts := strings.Split(good, ".")
	tamperedPayload := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+testIss+`","aud":"`+testAud+`","sub":"r-1","role":"service","iat":1,"exp":9999999999}`)) + "." + parts[2]

	tests := []struct {
		name    string
		token   string
		cfg     JWTConfig
		want    Principal
		wantErr string
	}{
		{name: "EdDSA rider", token: good, want: Principal{RoleRider, "r-1"}},
		{name: "RS256 dispatcher", token: rsaTok, want: Principal{RoleDispatcher, "d-1"}},
		{name: "every role", token: mint(RoleService, "trip", time.Hour, testNow), want: Principal{RoleService, "trip"}},
		{name: "expired", token: mint(RoleRider, "r", time.Minute, testNow.Add(-time.Hour)), wantErr: "token expired"},
		{name: "expired but within leeway", token: mint(RoleRider, "r", time.Minute, testNow.Add(-80*time.Second)), cfg: JWTConfig{Leeway: 30 * time.Second}, want: Principal{RoleRider, "r"}},
		{name: "expired beyond leeway", token: mint(RoleRider, "r", time.Minute, testNow.Add(-100*time.Second)), cfg: JWTConfig{Leeway: 30 * time.Second}, wantErr: "token expired"},
		{name: "issued in the future", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "iat", testNow.Add(time.Hour).Unix())), wantErr: "issued in the future"},
		{name: "not valid yet", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "nbf", testNow.Add(time.Hour).Unix())), wantErr: "not valid yet"},
		{name: "wrong issuer", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "iss", "evil")), wantErr: "wrong issuer"},
		{name: "no issuer", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "iss", nil)), wantErr: "required claim missing"},
		{name: "wrong audience", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "aud", "other")), wantErr: "wrong audience"},
		{name: "audience list containing ours", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "aud", []string{"x", testAud})), want: Principal{RoleRider, "r-42"}},
		{name: "no exp", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "exp", nil)), wantErr: "required claim missing"},
		{name: "no iat", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "iat", nil)), wantErr: "invalid claims"},
		{name: "no sub", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "sub", nil)), wantErr: "invalid claims"},
		{name: "no role", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "role", nil)), wantErr: "invalid claims"},
		{name: "unknown role", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "role", "admin")), wantErr: "invalid claims"},
		{name: "role of the wrong type", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.edKid, with(baseClaims(), "role", 7)), wantErr: "malformed"},
		{name: "lifetime over MaxTTL", token: mint(RoleRider, "r", 48*time.Hour, testNow), cfg: JWTConfig{MaxTTL: 24 * time.Hour}, wantErr: "lifetime exceeds"},
		{name: "unknown kid", token: sign(t, jwt.SigningMethodEdDSA, k.ed, "nope", baseClaims()), wantErr: "unknown signing key"},
		{name: "no kid", token: sign(t, jwt.SigningMethodEdDSA, k.ed, "", baseClaims()), wantErr: "unknown signing key"},
		{name: "signed by another key under our kid", token: sign(t, jwt.SigningMethodEdDSA, k.other, k.edKid, baseClaims()), wantErr: "invalid signature"},
		{name: "RS256 header on the Ed25519 kid", token: sign(t, jwt.SigningMethodRS256, k.rsa, k.edKid, baseClaims()), wantErr: "cannot be verified"},
		{name: "EdDSA header on the RSA kid", token: sign(t, jwt.SigningMethodEdDSA, k.ed, k.rsaKid, baseClaims()), wantErr: "cannot be verified"},
		{name: "HS256 with the public key as secret", token: sign(t, jwt.SigningMethodHS256, edPub, k.edKid, baseClaims()), wantErr: "invalid signature"},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, k.edKid, baseClaims()), wantErr: "invalid signature"},
		{name: "RS512 is not accepted", token: sign(t, jwt.SigningMethodRS512, k.rsa, k.rsaKid, baseClaims()), wantErr: "invalid signature"},
		{name: "tampered payload", token: tamperedPayload, wantErr: "invalid signature"},
		{name: "garbage", token: "not.a.token", wantErr: "malformed"},
		{name: "empty", token: "", wantErr: "malformed"},
		{name: "too long", token: strings.Repeat("a", maxTokenBytes+1), wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAuthenticator(t, tt.cfg)
			p, err := a.Verify(tt.token)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("accepted as %v", p)
				}
				if !errors.Is(err, ErrUnauthenticated) {
					t.Errorf("error %v does not wrap ErrUnauthenticated", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q, want it to mention %q", err, tt.wantErr)
				}
				assertNoTokenLeak(t, err.Error(), tt.token)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if p != tt.want {
				t.Fatalf("principal %v, want %v", p, tt.want)
			}
		})
	}
}

// assertNoTokenLeak fails if msg contains any 12-byte run of the token's
// segments.
func assertNoTokenLeak(t *testing.T, msg, token string) {
	t.Helper()
	for _, seg := range strings.Split(token, ".") {
		for i := 0; i+12 <= len(seg); i += 6 {
			if strings.Contains(msg, seg[i:i+12]) {
				t.Fatalf("error %q leaks token material %q", msg, seg[i:i+12])
			}
		}
	}
}

func TestAuthenticateHeader(t *testing.T) {
	k := mustKeys(t)
	tok, err := Mint(k.ed, k.edKid, testIss, testAud, RoleDriver, "d-7", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		md      metadata.MD
		want    Principal
		wantErr bool
	}{
		{"Bearer", metadata.Pairs("authorization", "Bearer "+tok), Principal{RoleDriver, "d-7"}, false},
		{"scheme is case-insensitive", metadata.Pairs("authorization", "bearer "+tok), Principal{RoleDriver, "d-7"}, false},
		{"no header", metadata.MD{}, Principal{}, true},
		{"two headers", metadata.Pairs("authorization", "Bearer "+tok, "authorization", "Bearer "+tok), Principal{}, true},
		{"Basic", metadata.Pairs("authorization", "Basic dXNlcjpwdw=="), Principal{}, true},
		{"Bearer without token", metadata.Pairs("authorization", "Bearer "), Principal{}, true},
		{"dev header is not enough", metadata.Pairs("x-hexride-principal", "service:x"), Principal{}, true},
	}
	a := newTestAuthenticator(t, JWTConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), tt.md))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				assertNoTokenLeak(t, err.Error(), tok)
			}
			if p != tt.want {
				t.Fatalf("principal %v, want %v", p, tt.want)
			}
		})
	}
}

func TestJWTConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  JWTConfig
		want error
	}{
		{"default", DefaultJWTConfig("i", "a"), nil},
		{"no issuer", JWTConfig{Audience: "a"}, ErrNoIssuer},
		{"no audience", JWTConfig{Issuer: "i"}, ErrNoAudience},
		{"negative leeway", JWTConfig{Issuer: "i", Audience: "a", Leeway: -1}, ErrBadLeeway},
		{"huge leeway", JWTConfig{Issuer: "i", Audience: "a", Leeway: time.Hour}, ErrBadLeeway},
		{"negative max ttl", JWTConfig{Issuer: "i", Audience: "a", MaxTTL: -1}, ErrBadMaxTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); !errors.Is(err, tt.want) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewJWTAuthenticator(DefaultJWTConfig("i", "a"), nil); !errors.Is(err, ErrNoKeySource) {
		t.Fatalf("nil key source: %v", err)
	}
}

func TestParseJWKS(t *testing.T) {
	k := mustKeys(t)
	ed := Ed25519JWK(k.ed.Public().(ed25519.PublicKey), "a")
	doc := func(keys ...map[string]string) []byte {
		b, err := MarshalJWKS(keys...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withField := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	smallRSA := withField(RSAJWK(&k.rsa.PublicKey, "r"), "n", base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes()[:128]))
	tests := []struct {
		name    string
		data    []byte
		kids    []string
		wantErr error
	}{
		{"ed25519 and rsa", k.jwks, []string{"ed-1", "rsa-1"}, nil},
		{"encryption key skipped", doc(ed, withField(ed, "kid", "b", "use", "enc")), []string{"a"}, nil},
		{"other curve skipped", doc(ed, withField(ed, "kid", "b", "crv", "X25519")), []string{"a"}, nil},
		{"EC key skipped", doc(ed, map[string]string{"kty": "EC", "crv": "P-256", "kid": "e", "x": "AA", "y": "AA"}), []string{"a"}, nil},
		{"PS256 RSA key skipped", doc(ed, withField(RSAJWK(&k.rsa.PublicKey, "p"), "alg", "PS256")), []string{"a"}, nil},
		{"only unusable keys", doc(withField(ed, "use", "enc")), nil, ErrNoUsableKeys},
		{"empty set", []byte(`{"keys":[]}`), nil, ErrNoUsableKeys},
		{"not JSON", []byte(`{`), nil, ErrBadJWK},
		{"duplicate kid", doc(ed, ed), nil, ErrBadJWK},
		{"missing kid", doc(withField(ed, "kid", "")), nil, ErrBadJWK},
		{"short x", doc(withField(ed, "x", "AAAA")), nil, ErrBadJWK},
		{"private key published", doc(withField(ed, "d", "AAAA")), nil, ErrBadJWK},
		{"alg mismatch", doc(withField(ed, "alg", "RS256")), nil, ErrBadJWK},
		{"RSA below 2048 bits", doc(smallRSA), nil, ErrBadJWK},
		{"RSA even exponent", doc(withField(RSAJWK(&k.rsa.PublicKey, "r"), "e", "Ag")), nil, ErrBadJWK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ParseJWKS(tt.data)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if set.Len() != len(tt.kids) {
				t.Fatalf("Len = %d, want %d", set.Len(), len(tt.kids))
			}
			for _, kid := range tt.kids {
				if _, _, ok := set.Lookup(kid); !ok {
					t.Errorf("kid %q missing", kid)
				}
			}
		})
	}
}

func TestEd25519ThumbprintRFC8037(t *testing.T) {
	// RFC 8037 appendix A.3.
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got, want := Ed25519Thumbprint(ed25519.PublicKey(x)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("thumbprint %s, want %s", got, want)
	}
}

func TestJWKSConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  JWKSConfig
		want error
	}{
		{"file", JWKSConfig{File: "/x"}, nil},
		{"https", JWKSConfig{URL: "https://idp/jwks.json"}, nil},
		{"neither", JWKSConfig{}, ErrJWKSLocation},
		{"both", JWKSConfig{File: "/x", URL: "https://idp"}, ErrJWKSLocation},
		{"plain http", JWKSConfig{URL: "http://idp/jwks.json"}, ErrJWKSScheme},
		{"plain http allowed", JWKSConfig{URL: "http://127.0.0.1/jwks.json", AllowInsecureHTTP: true}, nil},
		{"relative", JWKSConfig{URL: "jwks.json"}, ErrJWKSScheme},
		{"negative interval", JWKSConfig{File: "/x", RefreshInterval: -1}, ErrJWKSInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); !errors.Is(err, tt.want) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestJWKSSourceFileRefreshKeepsLastGood(t *testing.T) {
	k := mustKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	edOnly, _ := MarshalJWKS(Ed25519JWK(k.ed.Public().(ed25519.PublicKey), "ed-1"))
	if err := os.WriteFile(path, edOnly, 0o644); err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	src, err := NewJWKSSource(context.Background(), JWKSConfig{File: path, RefreshInterval: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Keys().Len() != 1 {
		t.Fatalf("Len = %d", src.Keys().Len())
	}
	// Rotation: the file gains the RSA key.
	if err := os.WriteFile(path, k.jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	clk.Tick(t)
	if src.Keys().Len() != 2 {
		t.Fatal("rotated key not loaded")
	}
	// Broken file: the last good set stays.
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	clk.Tick(t) // returns once the failed refresh is done
	if src.Keys().Len() != 2 {
		t.Fatal("last good keys dropped after a failed refresh")
	}
	if err := src.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh of garbage succeeded")
	}
}

func TestJWKSSourceHTTP(t *testing.T) {
	k := mustKeys(t)
	var fail atomic.Bool
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(k.jwks)
	}))
	defer srv.Close()

	if _, err := NewJWKSSource(context.Background(), JWKSConfig{URL: srv.URL}); !errors.Is(err, ErrJWKSScheme) {
		t.Fatalf("plain http accepted without AllowInsecureHTTP: %v", err)
	}
	clk := newFakeClock()
	src, err := NewJWKSSource(context.Background(), JWKSConfig{URL: srv.URL, AllowInsecureHTTP: true, HTTPClient: srv.Client(), RefreshInterval: time.Hour, MinRefreshInterval: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewJWTAuthenticator(JWTConfig{Issuer: testIss, Audience: testAud, Now: func() time.Time { return testNow }}, src)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := Mint(k.rsa, k.rsaKid, testIss, testAud, RoleService, "matching", time.Hour, testNow)
	if _, err := a.Verify(tok); err != nil {
		t.Fatalf("verify with fetched keys: %v", err)
	}

	fail.Store(true)
	clk.Tick(t)
	if _, err := a.Verify(tok); err != nil {
		t.Fatalf("keys lost after a failed fetch: %v", err)
	}

	// An unknown kid asks for an early refresh, at most once per
	// MinRefreshInterval.
	before := hits.Load()
	unknown := sign(t, jwt.SigningMethodEdDSA, k.ed, "rotated", baseClaims())
	a.Verify(unknown)
	a.Verify(unknown)
	if hits.Load() != before {
		t.Fatal("early refresh within MinRefreshInterval of the last attempt")
	}
	clk.Advance(2 * time.Minute)
	a.Verify(unknown)
	waitUntil(t, func() bool { return hits.Load() == before+1 })
	clk.WaitPending(t) // the loop is back to waiting
	a.Verify(unknown)
	if hits.Load() != before+1 {
		t.Fatal("second early refresh within MinRefreshInterval")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	src.Close() // idempotent
}

func TestJWKSSourceStopsWithContext(t *testing.T) {
	k := mustKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(path, k.jwks, 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	src, err := NewJWKSSource(ctx, JWKSConfig{File: path, RefreshInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan struct{})
	go func() { src.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung after ctx cancel")
	}
	// A failed first load is an error, and leaves no goroutine.
	if _, err := NewJWKSSource(context.Background(), JWKSConfig{File: filepath.Join(t.TempDir(), "missing"), RefreshInterval: time.Millisecond}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// decodeClaims returns a token's payload (test helper for fuzzing).
func decodeClaims(token string) (map[string]any, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m) == nil
}

var _ crypto.Signer = ed25519.PrivateKey(nil)
