package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// JWK and JWKS errors.
var (
	ErrNoUsableKeys = errors.New("auth: JWKS has no usable signing keys")
	ErrBadJWK       = errors.New("auth: invalid JWK")
)

// minRSABits is the smallest RSA modulus accepted in a JWKS.
const minRSABits = 2048

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// KeySet is an immutable set of verification keys by key id.
type KeySet struct {
	keys map[string]jwk
}

type jwk struct {
	key crypto.PublicKey // ed25519.PublicKey or *rsa.PublicKey
	alg string           // "EdDSA" or "RS256"
}

// Lookup returns the key with kid and the JWS algorithm it verifies.
func (s *KeySet) Lookup(kid string) (crypto.PublicKey, string, bool) {
	if s == nil {
		return nil, "", false
	}
	k, ok := s.keys[kid]
	return k.key, k.alg, ok
}

// Len is the number of keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// rawJWK is the RFC 7517/7518/8037 wire form of the members we read.
type rawJWK struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	Kid    string   `json:"kid,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	// Private members: their presence means someone published a private
	// key; we refuse the key rather than silently use its public half.
	D string `json:"d,omitempty"`
}

// ParseJWKS parses a JWK Set (RFC 7517 §5). It keeps Ed25519 (kty OKP, crv
// Ed25519, alg EdDSA) and RSA (alg RS256, ≥2048 bits) signature keys that
// have a kid; it skips keys of other types or uses (so a set shared with
// encryption keys still loads) and fails on a malformed key of a kind it
// reads, on duplicate kids, and when no usable key remains.
func ParseJWKS(data []byte) (*KeySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: not a JWK set: %v", ErrBadJWK, err)
	}
	set := &KeySet{keys: make(map[string]jwk, len(doc.Keys))}
	for i, raw := range doc.Keys {
		var k rawJWK
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("%w: key %d: %v", ErrBadJWK, i, err)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if len(k.KeyOps) > 0 && !contains(k.KeyOps, "verify") {
			continue
		}
		parsed, ok, err := parseJWK(k)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d (kid %q): %v", ErrBadJWK, i, k.Kid, err)
		}
		if !ok {
			continue
		}
		if k.Kid == "" {
			return nil, fmt.Errorf("%w: key %d has no kid", ErrBadJWK, i)
		}
		if _, dup := set.keys[k.Kid]; dup {
			return nil, fmt.Errorf("%w: duplicate kid %q", ErrBadJWK, k.Kid)
		}
		set.keys[k.Kid] = parsed
	}
	if len(set.keys) == 0 {
		return nil, ErrNoUsableKeys
	}
	return set, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// parseJWK returns ok=false for a key type we do not use.
func parseJWK(k rawJWK) (jwk, bool, error) {
	switch k.Kty {
	case "OKP":
		if k.Crv != "Ed25519" {
			return jwk{}, false, nil
		}
		if k.Alg != "" && k.Alg != "EdDSA" {
			return jwk{}, false, fmt.Errorf("alg %q does not fit an Ed25519 key", k.Alg)
		}
		if k.D != "" {
			return jwk{}, false, errors.New("contains a private key")
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return jwk{}, false, errors.New("bad Ed25519 x")
		}
		return jwk{key: ed25519.PublicKey(x), alg: "EdDSA"}, true, nil
	case "RSA":
		if k.Alg != "" && k.Alg != "RS256" {
			if k.Alg == "RS384" || k.Alg == "RS512" || k.Alg == "PS256" || k.Alg == "PS384" || k.Alg == "PS512" {
				return jwk{}, false, nil // a valid key for an algorithm we do not accept
			}
			return jwk{}, false, fmt.Errorf("alg %q does not fit an RSA key", k.Alg)
		}
		if k.D != "" {
			return jwk{}, false, errors.New("contains a private key")
		}
		n, err := base64.RawURLEncoding.DecodeString(k.N)
		if err != nil || len(n) == 0 || n[0] == 0 {
			return jwk{}, false, errors.New("bad RSA n")
		}
		e, err := base64.RawURLEncoding.DecodeString(k.E)
		if err != nil || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return jwk{}, false, errors.New("bad RSA e")
		}
		var exp int
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if pub.N.BitLen() < minRSABits {
			return jwk{}, false, fmt.Errorf("RSA key of %d bits is shorter than %d", pub.N.BitLen(), minRSABits)
		}
		if exp < 3 || exp%2 == 0 {
			return jwk{}, false, errors.New("bad RSA exponent")
		}
		return jwk{key: pub, alg: "RS256"}, true, nil
	}
	return jwk{}, false, nil
}

// Ed25519JWK returns the public JWK of key with kid (alg EdDSA, use sig).
func Ed25519JWK(key ed25519.PublicKey, kid string) map[string]string {
	return map[string]string{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
		"x": base64.RawURLEncoding.EncodeToString(key),
	}
}

// RSAJWK returns the public JWK of key with kid (alg RS256, use sig).
func RSAJWK(key *rsa.PublicKey, kid string) map[string]string {
	return map[string]string{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}
}

// MarshalJWKS returns a JWK Set document holding keys (from Ed25519JWK or
// RSAJWK).
func MarshalJWKS(keys ...map[string]string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{"keys": keys}, "", "  ")
}

// Ed25519Thumbprint is the RFC 7638 JWK thumbprint of key, used as its kid.
func Ed25519Thumbprint(key ed25519.PublicKey) string {
	// Members in lexicographic order, no whitespace (RFC 7638 §3).
	canon := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(key) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// KeySource supplies the current verification keys.
//
// A KeySet is immutable, so a source that changes its keys returns a new
// set; the JWTAuthenticator's verified-token cache relies on that: a token
// is served from the cache only while Keys returns the very set it was
// verified under. A source should keep returning the same set while its
// keys do not change (JWKSSource does across refreshes), or every change of
// set costs each cached token one more verification.
type KeySource interface {
	Keys() *KeySet
}

// StaticKeys is a KeySource that never changes.
type StaticKeys struct{ Set *KeySet }

// Keys implements KeySource.
func (s StaticKeys) Keys() *KeySet { return s.Set }

// Clock is the time the refresher runs on; tests substitute a fake.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// JWKSConfig says where the verification keys come from.
type JWKSConfig struct {
	// Exactly one of File and URL. URL must be https unless
	// AllowInsecureHTTP (tests and loopback only).
	File              string
	URL               string
	AllowInsecureHTTP bool
	// RefreshInterval re-reads the document; 0 loads it once. A failed
	// refresh keeps the last good set.
	RefreshInterval time.Duration
	// MinRefreshInterval bounds how often an unknown kid can trigger an
	// early refresh (key rotation); default 30 s.
	MinRefreshInterval time.Duration
	// HTTPClient fetches URL; default a client with a 10 s timeout.
	HTTPClient *http.Client
	Clock      Clock
	Logger     *slog.Logger
}

// JWKSConfig errors.
var (
	ErrJWKSLocation = errors.New("auth: JWKS needs exactly one of File or URL")
	ErrJWKSScheme   = errors.New("auth: JWKS URL must be https")
	ErrJWKSInterval = errors.New("auth: JWKS refresh intervals must not be negative")
)

// Validate reports the first problem with c.
func (c JWKSConfig) Validate() error {
	if (c.File == "") == (c.URL == "") {
		return ErrJWKSLocation
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: %q is not an absolute URL", ErrJWKSScheme, c.URL)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && c.AllowInsecureHTTP) {
			return ErrJWKSScheme
		}
	}
	if c.RefreshInterval < 0 || c.MinRefreshInterval < 0 {
		return ErrJWKSInterval
	}
	return nil
}

// JWKSSource is a KeySource loaded from a file or URL and refreshed in the
// background. Close stops the refresher.
type JWKSSource struct {
	cfg     JWKSConfig
	current atomic.Pointer[KeySet]
	kick    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	closeMu sync.Once

	mu          sync.Mutex
	lastAttempt time.Time
}

var _ KeySource = (*JWKSSource)(nil)

// NewJWKSSource loads the keys once (failing if that fails) and, if
// cfg.RefreshInterval > 0, starts refreshing them until ctx ends or Close.
func NewJWKSSource(ctx context.Context, cfg JWKSConfig) (*JWKSSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = 30 * time.Second
	}
	s := &JWKSSource{cfg: cfg, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	if cfg.RefreshInterval <= 0 {
		close(s.done)
		s.cancel = func() {}
		return s, nil
	}
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go s.loop(ctx)
	return s, nil
}

// Keys implements KeySource: the last good set.
func (s *JWKSSource) Keys() *KeySet { return s.current.Load() }

// Refresh loads the document now; on failure the last good set stays.
func (s *JWKSSource) Refresh(ctx context.Context) error {
	s.mu.Lock()
	s.lastAttempt = s.cfg.Clock.Now()
	s.mu.Unlock()
	data, err := s.fetch(ctx)
	if err != nil {
		return err
	}
	set, err := ParseJWKS(data)
	if err != nil {
		return err
	}
	// An unchanged document keeps the current set, so tokens verified
	// under it stay cached; a changed one (a key added, removed or
	// replaced) is a new set, which invalidates them.
	if cur := s.current.Load(); cur != nil && cur.equal(set) {
		return nil
	}
	s.current.Store(set)
	return nil
}

// RequestRefresh asks the refresher for an early refresh (an unknown kid
// arrived: keys may have rotated), at most once per MinRefreshInterval. It
// never blocks.
func (s *JWKSSource) RequestRefresh() {
	s.mu.Lock()
	recent := s.cfg.Clock.Now().Sub(s.lastAttempt) < s.cfg.MinRefreshInterval
	s.mu.Unlock()
	if recent {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops the refresher and waits for it.
func (s *JWKSSource) Close() error {
	s.closeMu.Do(func() { s.cancel() })
	<-s.done
	return nil
}

func (s *JWKSSource) loop(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.Clock.After(s.cfg.RefreshInterval):
		case <-s.kick:
		}
		if err := s.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.cfg.Logger.Warn("JWKS refresh failed; keeping the last good keys", "source", s.where(), "error", err)
		}
	}
}

func (s *JWKSSource) where() string {
	if s.cfg.File != "" {
		return s.cfg.File
	}
	return s.cfg.URL
}

func (s *JWKSSource) fetch(ctx context.Context) ([]byte, error) {
	if s.cfg.File != "" {
		f, err := os.Open(s.cfg.File)
		if err != nil {
			return nil, fmt.Errorf("auth: read JWKS: %w", err)
		}
		defer f.Close()
		return readLimited(f)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auth: fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("auth: fetch JWKS: HTTP %d", resp.StatusCode)
	}
	return readLimited(resp.Body)
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("auth: JWKS larger than %d bytes", maxJWKSBytes)
	}
	return data, nil
}
