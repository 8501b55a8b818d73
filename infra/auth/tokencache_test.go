package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// swapKeys is a KeySource whose set a test replaces (a JWKS refresh).
type swapKeys struct{ p atomic.Pointer[KeySet] }

func newSwapKeys(s *KeySet) *swapKeys {
	k := &swapKeys{}
	k.p.Store(s)
	return k
}

func (k *swapKeys) Keys() *KeySet { return k.p.Load() }

func mustParseJWKS(t testing.TB, keys ...map[string]string) *KeySet {
	t.Helper()
	doc, err := MarshalJWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	set, err := ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// cacheTokens are the tokens the cache tests present, minted at testNow.
type cacheTokens struct {
	riderA, riderA2, short, rsaTok, forged string
	tamperedPayload, tamperedSig           string
}

func mintCacheTokens(t testing.TB) cacheTokens {
	t.Helper()
	k := mustKeys(t)
	mint := func(key any, kid string, role Role, sub string, ttl time.Duration) string {
		var s string
		var err error
		switch key := key.(type) {
		case ed25519.PrivateKey:
			s, err = Mint(key, kid, testIss, testAud, role, sub, ttl, testNow)
		default:
			s, err = Mint(k.rsa, kid, testIss, testAud, role, sub, ttl, testNow)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var c cacheTokens
	c.riderA = mint(k.ed, k.edKid, RoleRider, "r-1", time.Hour)
	c.riderA2 = mint(k.ed, k.edKid, RoleRider, "r-1", time.Hour) // same subject, another jti
	c.short = mint(k.ed, k.edKid, RoleDriver, "d-1", 10*time.Minute)
	c.rsaTok = mint(k.rsa, k.rsaKid, RoleDispatcher, "ops", time.Hour)
	c.forged = sign(t, jwt.SigningMethodEdDSA, k.other, k.edKid, baseClaims())
	parts := strings.Split(c.riderA, ".")
	// The same signature over a payload claiming the service role.
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"role":"rider"`, `"role":"service"`, 1))
	c.tamperedPayload = parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	// The same header and payload with one signature character changed.
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	c.tamperedSig = parts[0] + "." + parts[1] + "." + string(sig)
	if c.tamperedPayload == c.riderA || c.tamperedSig == c.riderA || c.riderA == c.riderA2 {
		t.Fatal("test tokens are not distinct")
	}
	return c
}

// TestTokenCache walks the verified-token cache through sequences of
// calls on a fake clock and a replaceable key source, checking each
// answer and whether it cost a signature check.
func TestTokenCache(t *testing.T) {
	k := mustKeys(t)
	tok := mintCacheTokens(t)
	sameKeys := mustParseJWKS(t, Ed25519JWK(k.ed.Public().(ed25519.PublicKey), k.edKid), RSAJWK(&k.rsa.PublicKey, k.rsaKid))
	rsaOnly := mustParseJWKS(t, RSAJWK(&k.rsa.PublicKey, k.rsaKid))
	riderA := Principal{RoleRider, "r-1"}
	driver := Principal{RoleDriver, "d-1"}
	ops := Principal{RoleDispatcher, "ops"}

	type step struct {
		advance  time.Duration // move the verifier's clock first
		keys     *KeySet       // then, if set, the key source returns it
		token    string
		want     Principal
		wantErr  string
		verified bool // a signature check ran for this call
	}
	tests := []struct {
		name      string
		cacheSize int
		steps     []step
		check     func(t *testing.T, st TokenCacheStats)
	}{
		{name: "hit", steps: []step{
			{token: tok.riderA, want: riderA, verified: true},
			{token: tok.riderA, want: riderA},
			{token: tok.riderA, want: riderA},
		}, check: func(t *testing.T, st TokenCacheStats) {
			if st.Hits != 2 || st.Misses != 1 || st.Entries != 1 {
				t.Errorf("stats %+v, want 2 hits, 1 miss, 1 entry", st)
			}
		}},
		{name: "a different token for the same subject is verified on its own", steps: []step{
			{token: tok.riderA, want: riderA, verified: true},
			{token: tok.riderA2, want: riderA, verified: true},
			{token: tok.riderA, want: riderA},
			{token: tok.riderA2, want: riderA},
		}, check: func(t *testing.T, st TokenCacheStats) {
			if st.Entries != 2 {
				t.Errorf("%d entries, want 2", st.Entries)
			}
		}},
		{name: "expiry on the verifier's clock and leeway", steps: []step{
			{token: tok.short, want: driver, verified: true},
			{advance: 10 * time.Minute, token: tok.short, want: driver}, // at exp: within the 30 s leeway
			{advance: 29 * time.Second, token: tok.short, want: driver},
			{advance: time.Second, token: tok.short, wantErr: "token expired", verified: true}, // exp + leeway
			{token: tok.short, wantErr: "token expired", verified: true},                       // refusals are not cached
		}, check: func(t *testing.T, st TokenCacheStats) {
			if st.Stale != 1 || st.Entries != 0 {
				t.Errorf("stats %+v, want 1 stale, 0 entries", st)
			}
		}},
		{name: "clock set back before iat minus leeway", steps: []step{
			{token: tok.riderA, want: riderA, verified: true},
			{advance: -31 * time.Second, token: tok.riderA, wantErr: "not valid yet", verified: true}, // nbf = iat
			{advance: time.Second, token: tok.riderA, want: riderA, verified: true},
		}},
		{name: "eviction at the bound, least recently used first", cacheSize: 2, steps: []step{
			{token: tok.riderA, want: riderA, verified: true},  // [A]
			{token: tok.riderA2, want: riderA, verified: true}, // [A2 A]
			{token: tok.riderA, want: riderA},                  // [A A2]
			{token: tok.rsaTok, want: ops, verified: true},     // [R A], A2 evicted
			{token: tok.riderA, want: riderA},                  // [A R]
			{token: tok.riderA2, want: riderA, verified: true}, // [A2 A], R evicted
			{token: tok.riderA, want: riderA},                  // [A A2]
			{token: tok.rsaTok, want: ops, verified: true},     // [R A], A2 evicted
		}, check: func(t *testing.T, st TokenCacheStats) {
			if st.Evictions != 3 || st.Entries != 2 {
				t.Errorf("stats %+v, want 3 evictions, 2 entries", st)
			}
		}},
		{name: "a new key set with the same keys re-verifies once", steps: []step{
			{token: tok.riderA, want: riderA, verified: true},
			{keys: sameKeys, token: tok.riderA, want: riderA, verified: true},
			{token: tok.riderA, want: riderA},
		}, check: func(t *testing.T, st TokenCacheStats) {
			if st.Stale != 1 {
				t.Errorf("%d stale, want 1", st.Stale)
			}
		}},
		{name: "a removed key refuses tokens cached under it", steps: []step{
			{token: tok.riderA, want: riderA, verified: true},
			{token: tok.rsaTok, want: ops, verified: true},
			{keys: rsaOnly, token: tok.riderA, wantErr: "unknown signing key"},
			{token: tok.riderA, wantErr: "unknown signing key"},
			{token: tok.rsaTok, want: ops, verified: true}, // still good, verified under the new set
			{token: tok.rsaTok, want: ops},
		}},
		{name: "tampered tokens are not served from the cache", steps: []step{
			{token: tok.riderA, want: riderA, verified: true},
			{token: tok.tamperedPayload, wantErr: "invalid signature", verified: true},
			{token: tok.tamperedSig, wantErr: "invalid signature", verified: true},
			{token: tok.riderA + " ", wantErr: "malformed"},
			{token: tok.riderA, want: riderA},
		}},
		{name: "refused tokens are not cached", steps: []step{
			{token: tok.forged, wantErr: "invalid signature", verified: true},
			{token: tok.forged, wantErr: "invalid signature", verified: true},
			{token: "not.a.jwt", wantErr: "malformed"},
		}, check: func(t *testing.T, st TokenCacheStats) {
			if st.Entries != 0 || st.Hits != 0 {
				t.Errorf("stats %+v, want nothing cached", st)
			}
		}},
		{name: "cache off", cacheSize: -1, steps: []step{
			{token: tok.riderA, want: riderA, verified: true},
			{token: tok.riderA, want: riderA, verified: true},
		}, check: func(t *testing.T, st TokenCacheStats) {
			if st != (TokenCacheStats{Verifications: 2}) {
				t.Errorf("stats %+v, want only 2 verifications", st)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			src := newSwapKeys(k.set)
			a, err := NewJWTAuthenticator(JWTConfig{Issuer: testIss, Audience: testAud, Leeway: 30 * time.Second,
				MaxTTL: 24 * time.Hour, Now: clk.Now, CacheSize: tt.cacheSize}, src)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				if s.keys != nil {
					src.p.Store(s.keys)
				}
				before := a.CacheStats().Verifications
				p, err := a.Verify(s.token)
				if s.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), s.wantErr) {
						t.Fatalf("step %d: %v, %v; want an error mentioning %q", i, p, err, s.wantErr)
					}
					assertNoTokenLeak(t, err.Error(), s.token)
				} else if err != nil || p != s.want {
					t.Fatalf("step %d: %v, %v; want %v", i, p, err, s.want)
				}
				if got := a.CacheStats().Verifications - before; got != map[bool]uint64{false: 0, true: 1}[s.verified] {
					t.Fatalf("step %d: %d signature checks, want verified=%v", i, got, s.verified)
				}
			}
			if tt.check != nil {
				tt.check(t, a.CacheStats())
			}
		})
	}
}

// TestTokenCacheFollowsJWKSRefresh: a refresh that reads the same
// document keeps cached tokens; one that drops their key refuses them.
func TestTokenCacheFollowsJWKSRefresh(t *testing.T) {
	k := mustKeys(t)
	tok := mintCacheTokens(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, k.jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := NewJWKSSource(context.Background(), JWKSConfig{File: path})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	a := newTestAuthenticatorWith(t, src)
	verify := func(token string) error { _, err := a.Verify(token); return err }

	if err := verify(tok.riderA); err != nil {
		t.Fatal(err)
	}
	set := src.Keys()
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if src.Keys() != set {
		t.Fatal("refreshing an unchanged JWKS replaced the key set")
	}
	if err := verify(tok.riderA); err != nil || a.CacheStats().Verifications != 1 {
		t.Fatalf("after an unchanged refresh: %v, %+v", err, a.CacheStats())
	}
	// Rotation: the Ed25519 key is withdrawn.
	rsaOnly, _ := MarshalJWKS(RSAJWK(&k.rsa.PublicKey, k.rsaKid))
	if err := os.WriteFile(path, rsaOnly, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := verify(tok.riderA); err == nil || !strings.Contains(err.Error(), "unknown signing key") {
		t.Fatalf("token of a withdrawn key after refresh: %v", err)
	}
	if err := verify(tok.rsaTok); err != nil {
		t.Fatal(err)
	}
}

func newTestAuthenticatorWith(t testing.TB, keys KeySource) *JWTAuthenticator {
	t.Helper()
	a, err := NewJWTAuthenticator(JWTConfig{Issuer: testIss, Audience: testAud, Leeway: 30 * time.Second, Now: func() time.Time { return testNow }}, keys)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestKeySetEqual(t *testing.T) {
	k := mustKeys(t)
	edJWK := Ed25519JWK(k.ed.Public().(ed25519.PublicKey), k.edKid)
	rsaJWK := RSAJWK(&k.rsa.PublicKey, k.rsaKid)
	both := mustParseJWKS(t, edJWK, rsaJWK)
	tests := []struct {
		name string
		a, b *KeySet
		want bool
	}{
		{"same set", both, both, true},
		{"same keys, parsed twice", both, mustParseJWKS(t, rsaJWK, edJWK), true},
		{"a key fewer", both, mustParseJWKS(t, rsaJWK), false},
		{"another key under the same kid", both, mustParseJWKS(t, Ed25519JWK(k.other.Public().(ed25519.PublicKey), k.edKid), rsaJWK), false},
		{"the same key under another kid", both, mustParseJWKS(t, Ed25519JWK(k.ed.Public().(ed25519.PublicKey), "ed-2"), rsaJWK), false},
		{"nil and a set", nil, both, false},
		{"nil and nil", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.equal(tt.b); got != tt.want {
				t.Fatalf("equal = %v, want %v", got, tt.want)
			}
			if got := tt.b.equal(tt.a); got != tt.want {
				t.Fatalf("equal (swapped) = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTokenCacheConcurrent hammers a small cache (constant eviction) from
// several goroutines while the key set is replaced and the clock moves;
// every answer must be the token's own principal or, for the forged
// token, a refusal. Run it with -race.
func TestTokenCacheConcurrent(t *testing.T) {
	k := mustKeys(t)
	var toks []string
	var want []Principal
	for i := range 12 {
		p := Principal{Role: RoleRider, Subject: fmt.Sprintf("r-%d", i%4)}
		s, err := Mint(k.ed, k.edKid, testIss, testAud, p.Role, p.Subject, time.Hour, testNow)
		if err != nil {
			t.Fatal(err)
		}
		toks, want = append(toks, s), append(want, p)
	}
	forged := sign(t, jwt.SigningMethodEdDSA, k.other, k.edKid, baseClaims())
	sameKeys := mustParseJWKS(t, Ed25519JWK(k.ed.Public().(ed25519.PublicKey), k.edKid))
	src := newSwapKeys(k.set)
	clk := newFakeClock()
	a, err := NewJWTAuthenticator(JWTConfig{Issuer: testIss, Audience: testAud, Leeway: 30 * time.Second, Now: clk.Now, CacheSize: 5}, src)
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 4, 150
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // rotation and time
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if i%2 == 0 {
				src.p.Store(sameKeys)
			} else {
				src.p.Store(k.set)
			}
			clk.Advance(time.Second)
		}
	}()
	errs := make(chan error, workers)
	var workersWG sync.WaitGroup
	for w := range workers {
		workersWG.Add(1)
		go func() {
			defer workersWG.Done()
			for i := range rounds {
				j := (i*7 + w*3) % (len(toks) + 1)
				if j == len(toks) {
					if p, err := a.Verify(forged); err == nil {
						errs <- fmt.Errorf("forged token accepted as %v", p)
						return
					}
					continue
				}
				if p, err := a.Verify(toks[j]); err != nil || p != want[j] {
					errs <- fmt.Errorf("token %d: %v, %v; want %v", j, p, err, want[j])
					return
				}
			}
		}()
	}
	workersWG.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := a.CacheStats()
	if st.Entries > 5 {
		t.Errorf("%d entries over a bound of 5", st.Entries)
	}
	if !t.Failed() && st.Hits+st.Misses != workers*rounds {
		t.Errorf("stats %+v: hits and misses do not add up to %d lookups", st, workers*rounds)
	}
	t.Logf("stats %+v", st)
}

// In-process benchmarks: Authenticate on one token, with and without the
// verified-token cache, and the certificate path services take.

func benchAuthenticate(b *testing.B, cacheSize int) {
	k := mustKeys(b)
	tok, err := Mint(k.ed, k.edKid, testIss, testAud, RoleDriver, "d-1", time.Hour, testNow)
	if err != nil {
		b.Fatal(err)
	}
	a, err := NewJWTAuthenticator(JWTConfig{Issuer: testIss, Audience: testAud, Leeway: 30 * time.Second, MaxTTL: 24 * time.Hour,
		Now: func() time.Time { return testNow }, CacheSize: cacheSize}, StaticKeys{Set: k.set})
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticateCached(b *testing.B)   { benchAuthenticate(b, DefaultTokenCacheSize) }
func BenchmarkAuthenticateUncached(b *testing.B) { benchAuthenticate(b, -1) }

// BenchmarkAuthenticateCachedParallel measures contention on the cache's
// lock with every core on one hot token.
func BenchmarkAuthenticateCachedParallel(b *testing.B) {
	k := mustKeys(b)
	tok, _ := Mint(k.ed, k.edKid, testIss, testAud, RoleDriver, "d-1", time.Hour, testNow)
	a := newTestAuthenticatorWith(b, StaticKeys{Set: k.set})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Authenticate(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAuthenticatePeerCert is a service call with a verified client
// certificate and a bearer token through the combined authenticator: the
// certificate decides, the token is never parsed.
func BenchmarkAuthenticatePeerCert(b *testing.B) {
	k := mustKeys(b)
	tok, _ := Mint(k.ed, k.edKid, testIss, testAud, RoleDispatcher, "ops", time.Hour, testNow)
	jwtAuth := newTestAuthenticatorWith(b, StaticKeys{Set: k.set})
	a, err := NewCombinedAuthenticator(CombinedConfig{PeerCerts: true, Bearer: jwtAuth})
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(SPIFFEServicePrefix + "matching-7")
	leaf := &x509.Certificate{URIs: []*url.URL{u}}
	info := credentials.TLSInfo{}
	info.State.VerifiedChains = [][]*x509.Certificate{{leaf}}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok))
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.Authenticate(ctx)
		if err != nil || p.Role != RoleService {
			b.Fatal(p, err)
		}
	}
	if v := jwtAuth.CacheStats().Verifications; v != 0 {
		b.Fatalf("%d token verifications on the certificate path", v)
	}
}
