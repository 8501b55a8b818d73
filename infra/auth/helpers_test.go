package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testIss = "https://auth.hexride.test"
	testAud = "hexride-api"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testKeys struct {
	ed     ed25519.PrivateKey
	edKid  string
	rsa    *rsa.PrivateKey
	rsaKid string
	other  ed25519.PrivateKey // not in the set
	set    *KeySet
	jwks   []byte
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func mustKeys(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		_, ed, _ := ed25519.GenerateKey(rand.Reader)
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys = testKeys{ed: ed, edKid: "ed-1", rsa: rk, rsaKid: "rsa-1", other: other}
		keys.jwks, err = MarshalJWKS(Ed25519JWK(ed.Public().(ed25519.PublicKey), "ed-1"), RSAJWK(&rk.PublicKey, "rsa-1"))
		if err != nil {
			panic(err)
		}
		keys.set, err = ParseJWKS(keys.jwks)
		if err != nil {
			panic(err)
		}
	})
	return keys
}

func newTestAuthenticator(t testing.TB, cfg JWTConfig) *JWTAuthenticator {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIss
	}
	if cfg.Audience == "" {
		cfg.Audience = testAud
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	a, err := NewJWTAuthenticator(cfg, StaticKeys{Set: mustKeys(t).set})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fakeClock drives refresh loops by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: testNow} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.pending = append(c.pending, ch)
	c.mu.Unlock()
	return ch
}

// WaitPending waits until the refresher is idle, waiting on a timer.
func (c *fakeClock) WaitPending(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("refresher is not waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

// Tick fires the timer the refresher waits on, then waits until it has
// finished that refresh and waits again.
func (c *fakeClock) Tick(t testing.TB) {
	t.Helper()
	c.WaitPending(t)
	c.mu.Lock()
	ch := c.pending[0]
	c.pending = c.pending[1:]
	now := c.now
	c.mu.Unlock()
	ch <- now
	c.WaitPending(t)
}
