package auth

import (
	"context"
	"crypto"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// TokenSource returns a bearer token to send.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a TokenSource returning one token (from `hexride token`).
type StaticToken string

// Token implements TokenSource.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// BearerCredentials sends a TokenSource's token as `authorization: Bearer`
// on every call, as connection credentials (grpc.WithPerRPCCredentials) or
// per call (grpc.PerRPCCredentials).
type BearerCredentials struct {
	Source TokenSource
	// AllowInsecure lets the token travel over plaintext connections
	// (hexride dev on loopback). Off, gRPC refuses to send it without TLS.
	AllowInsecure bool
}

var _ credentials.PerRPCCredentials = BearerCredentials{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c BearerCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := c.Source.Token(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]string{authorizationHeader: "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c BearerCredentials) RequireTransportSecurity() bool { return !c.AllowInsecure }

// BearerContext returns ctx that sends token on calls made with it. Do not
// combine it with connection-level bearer credentials: a call with two
// authorization headers is refused.
func BearerContext(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, authorizationHeader, "Bearer "+token)
}

// MinterConfig configures a Minter.
type MinterConfig struct {
	Key      crypto.Signer // ed25519.PrivateKey or *rsa.PrivateKey
	Kid      string
	Issuer   string
	Audience string
	// TTL of minted tokens; default 1 h. A cached token is replaced when
	// less than a fifth of its lifetime (at most 5 min) remains.
	TTL time.Duration
	// AllowInsecure: see BearerCredentials.AllowInsecure.
	AllowInsecure bool
	// MaxCached bounds the token cache; default 100,000 principals.
	MaxCached int
	Now       func() time.Time
}

// Minter mints tokens for any principal from a signing key and caches them
// until near expiry. The simulator uses one Minter for thousands of rider
// and driver principals over one connection; `hexride dev` uses one to
// print a token per role.
type Minter struct {
	cfg   MinterConfig
	mu    sync.Mutex
	cache map[Principal]cachedToken
}

type cachedToken struct {
	token   string
	refresh time.Time // mint a new one from here on
	expires time.Time
}

// NewMinter checks cfg by minting a test token.
func NewMinter(cfg MinterConfig) (*Minter, error) {
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if _, err := Mint(cfg.Key, cfg.Kid, cfg.Issuer, cfg.Audience, RoleService, "probe", cfg.TTL, cfg.Now()); err != nil {
		return nil, err
	}
	return &Minter{cfg: cfg, cache: make(map[Principal]cachedToken)}, nil
}

// NewDevMinter returns a Minter for the dev issuer and audience over k.
func NewDevMinter(k *DevKey, ttl time.Duration) (*Minter, error) {
	return NewMinter(MinterConfig{Key: k.Private, Kid: k.Kid, Issuer: DevIssuer, Audience: DevAudience, TTL: ttl, AllowInsecure: true})
}

// Token returns a token for p, minting one when the cached one is near
// expiry.
func (m *Minter) Token(p Principal) (string, error) {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cache[p]; ok && now.Before(c.refresh) {
		return c.token, nil
	}
	tok, err := Mint(m.cfg.Key, m.cfg.Kid, m.cfg.Issuer, m.cfg.Audience, p.Role, p.Subject, m.cfg.TTL, now)
	if err != nil {
		return "", err
	}
	margin := min(m.cfg.TTL/5, 5*time.Minute)
	if len(m.cache) >= m.cfg.MaxCached {
		m.evictLocked(now)
	}
	m.cache[p] = cachedToken{token: tok, refresh: now.Add(m.cfg.TTL - margin), expires: now.Add(m.cfg.TTL)}
	return tok, nil
}

// evictLocked drops expired tokens, or, if none, half the cache.
func (m *Minter) evictLocked(now time.Time) {
	for p, c := range m.cache {
		if !now.Before(c.refresh) {
			delete(m.cache, p)
		}
	}
	for p := range m.cache {
		if len(m.cache) < m.cfg.MaxCached/2+1 {
			break
		}
		delete(m.cache, p)
	}
}

// Source returns a TokenSource for p.
func (m *Minter) Source(p Principal) TokenSource { return minterSource{m: m, p: p} }

// PerRPCCredentials returns connection credentials that send p's token
// (grpc.WithPerRPCCredentials).
func (m *Minter) PerRPCCredentials(p Principal) credentials.PerRPCCredentials {
	return BearerCredentials{Source: m.Source(p), AllowInsecure: m.cfg.AllowInsecure}
}

// CallCredentials returns a call option sending p's token on one call, for
// clients sharing a connection among principals. A connection with its
// own bearer credentials must not also get these.
func (m *Minter) CallCredentials(p Principal) grpc.CallOption {
	return grpc.PerRPCCredentials(m.PerRPCCredentials(p))
}

// OutgoingContext returns ctx that sends p's token on calls made with it:
// the bearer counterpart of the package-level OutgoingContext.
func (m *Minter) OutgoingContext(ctx context.Context, p Principal) (context.Context, error) {
	tok, err := m.Token(p)
	if err != nil {
		return ctx, err
	}
	return BearerContext(ctx, tok), nil
}

type minterSource struct {
	m *Minter
	p Principal
}

func (s minterSource) Token(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return s.m.Token(s.p)
}
