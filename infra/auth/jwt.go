package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/metadata"
)

// Token algorithms accepted. Nothing else (no HS*, no "none"): a verifier
// that accepts HMAC can be fooled with the public key as the secret.
const (
	AlgEdDSA = "EdDSA"
	AlgRS256 = "RS256"
)

// authorizationHeader carries "Bearer <jwt>".
const authorizationHeader = "authorization"

// maxTokenBytes bounds a bearer token; longer ones are refused unparsed.
const maxTokenBytes = 8 << 10

// JWTConfig configures JWT verification.
type JWTConfig struct {
	// Issuer (iss) and Audience (aud) tokens must carry.
	Issuer   string
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway time.Duration
	// MaxTTL, if positive, refuses tokens whose exp−iat exceeds it, so a
	// leaked signing key cannot mint near-eternal tokens unnoticed.
	MaxTTL time.Duration
	// Now is the verifier's clock; default time.Now. The verified-token
	// cache judges expiry on the same clock with the same leeway.
	Now func() time.Time
	// CacheSize bounds the verified-token cache (entries, least recently
	// used evicted first): 0 means DefaultTokenCacheSize, negative turns
	// the cache off.
	CacheSize int
}

// JWTConfig errors.
var (
	ErrNoIssuer    = errors.New("auth: JWT issuer is required")
	ErrNoAudience  = errors.New("auth: JWT audience is required")
	ErrBadLeeway   = errors.New("auth: JWT leeway must be between 0 and 5m")
	ErrBadMaxTTL   = errors.New("auth: JWT max TTL must not be negative")
	ErrNoKeySource = errors.New("auth: JWT key source is required")
)

// DefaultJWTConfig returns the defaults: 30 s leeway, 24 h max TTL, a
// cache of DefaultTokenCacheSize verified tokens.
func DefaultJWTConfig(issuer, audience string) JWTConfig {
	return JWTConfig{Issuer: issuer, Audience: audience, Leeway: 30 * time.Second, MaxTTL: 24 * time.Hour, CacheSize: DefaultTokenCacheSize}
}

// Validate reports the first problem with c.
func (c JWTConfig) Validate() error {
	switch {
	case c.Issuer == "":
		return ErrNoIssuer
	case c.Audience == "":
		return ErrNoAudience
	case c.Leeway < 0 || c.Leeway > 5*time.Minute:
		return ErrBadLeeway
	case c.MaxTTL < 0:
		return ErrBadMaxTTL
	}
	return nil
}

// Claims are the claims of a hexride access token.
type Claims struct {
	jwt.RegisteredClaims
	Role Role `json:"role"`
}

// Validate implements jwt.ClaimsValidator: sub, iat, exp and a known role
// are required.
func (c Claims) Validate() error {
	if c.Subject == "" || len(c.Subject) > 128 {
		return errors.New("sub missing or too long")
	}
	if c.IssuedAt == nil {
		return errors.New("iat missing")
	}
	if c.ExpiresAt == nil {
		return errors.New("exp missing")
	}
	if !validRole(c.Role) {
		return errors.New("role missing or unknown")
	}
	return nil
}

func validRole(r Role) bool {
	switch r {
	case RoleRider, RoleDriver, RoleDispatcher, RoleService:
		return true
	}
	return false
}

// JWTAuthenticator verifies `authorization: Bearer <jwt>` against a key
// source. Its errors wrap ErrUnauthenticated and never contain the token
// or any part of it.
//
// A signature check costs tens of microseconds (Ed25519; more for RSA), so
// it remembers the tokens it accepted (see JWTConfig.CacheSize), keyed by
// their SHA-256: the same token again is answered without parsing it, as
// long as it is still within its validity on the verifier's clock (exp,
// iat and nbf with the leeway) and the key source still returns the key
// set it was verified under. Refused tokens are not remembered.
type JWTAuthenticator struct {
	cfg           JWTConfig
	keys          KeySource
	parser        *jwt.Parser
	cache         *tokenCache // nil: off
	verifications atomic.Uint64
}

var _ Authenticator = (*JWTAuthenticator)(nil)

// NewJWTAuthenticator returns an authenticator verifying tokens with keys.
func NewJWTAuthenticator(cfg JWTConfig, keys KeySource) (*JWTAuthenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, ErrNoKeySource
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{AlgEdDSA, AlgRS256}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithStrictDecoding(),
	)
	a := &JWTAuthenticator{cfg: cfg, keys: keys, parser: parser}
	switch {
	case cfg.CacheSize == 0:
		a.cache = newTokenCache(DefaultTokenCacheSize)
	case cfg.CacheSize > 0:
		a.cache = newTokenCache(cfg.CacheSize)
	}
	return a, nil
}

// CacheStats reports what the verified-token cache did (all zero but
// Verifications when it is off).
func (a *JWTAuthenticator) CacheStats() TokenCacheStats {
	st := TokenCacheStats{Verifications: a.verifications.Load()}
	if c := a.cache; c != nil {
		st.Hits, st.Misses, st.Stale, st.Evictions = c.hits.Load(), c.misses.Load(), c.stale.Load(), c.evictions.Load()
		st.Entries = c.len()
	}
	return st
}

// Authenticate implements Authenticator.
func (a *JWTAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	tok, err := bearerToken(ctx)
	if err != nil {
		return Principal{}, err
	}
	return a.Verify(tok)
}

// bearerToken returns the token of the single authorization header, or
// ErrUnauthenticated (errNoBearer when there is none at all).
func bearerToken(ctx context.Context) (string, error) {
	// Only the one header: copying all the metadata (FromIncomingContext)
	// would cost more than the cache lookup that follows.
	vals := metadata.ValueFromIncomingContext(ctx, authorizationHeader)
	switch len(vals) {
	case 0:
		return "", errNoBearer
	case 1:
	default:
		return "", fmt.Errorf("%w: more than one authorization header", ErrUnauthenticated)
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", fmt.Errorf("%w: authorization is not a bearer token", ErrUnauthenticated)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > maxTokenBytes {
		return "", fmt.Errorf("%w: bearer token empty or too long", ErrUnauthenticated)
	}
	return tok, nil
}

// errNoBearer is ErrUnauthenticated for "no authorization header", which
// the combined authenticator treats as "try the next method".
var errNoBearer = fmt.Errorf("%w: no bearer token", ErrUnauthenticated)

// Verify checks a raw token and returns its principal, from the cache
// when this token was verified before under the current key set and is
// still valid now.
func (a *JWTAuthenticator) Verify(token string) (Principal, error) {
	if len(token) > maxTokenBytes {
		return Principal{}, fmt.Errorf("%w: token too long", ErrUnauthenticated)
	}
	set := a.keys.Keys()
	if a.cache == nil {
		p, _, err := a.verifyAside(token, set)
		return p, err
	}
	sum := tokenSum(token)
	if p, ok := a.cache.get(sum, set, a.cfg.Now()); ok {
		return p, nil
	}
	p, e, err := a.verifyAside(token, set)
	if err != nil {
		return Principal{}, err
	}
	e.sum = sum
	a.cache.put(e)
	return p, nil
}

// verifyAside is verify on a goroutine of its own. Checking a signature
// (Ed25519 above all) takes ~10 KB of stack, and the caller is often a
// stream handler whose goroutine lives as long as the stream: a driver
// app's Connect kept a 16 KB stack for hours instead of 8 KB. The borrowed
// goroutine's stack goes back to the runtime when it ends; a goroutine
// start is nothing beside the signature check, and a cached token skips
// both.
func (a *JWTAuthenticator) verifyAside(token string, set *KeySet) (Principal, *tokenEntry, error) {
	var (
		p        Principal
		e        *tokenEntry
		err      error
		panicked any
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		// A panic goes back to the caller (and its recovery handler).
		defer func() { panicked = recover() }()
		p, e, err = a.verify(token, set)
	}()
	<-done
	if panicked != nil {
		panic(panicked)
	}
	return p, e, err
}

// tokenSum is the cache key of token: its SHA-256, hashed from a stack
// buffer (a []byte(token) conversion would allocate for every call).
func tokenSum(token string) [32]byte {
	var buf [1024]byte
	return sha256.Sum256(append(buf[:0], token...))
}

// verify parses and checks token against set (the signature, then the
// claims on the verifier's clock) and returns its principal and the cache
// entry recording why it holds.
func (a *JWTAuthenticator) verify(token string, set *KeySet) (Principal, *tokenEntry, error) {
	var claims Claims
	_, err := a.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) { return a.keyFunc(t, set) })
	if err != nil {
		return Principal{}, nil, fmt.Errorf("%w: %s", ErrUnauthenticated, describeJWTError(err))
	}
	if a.cfg.MaxTTL > 0 && claims.ExpiresAt.Sub(claims.IssuedAt.Time) > a.cfg.MaxTTL {
		return Principal{}, nil, fmt.Errorf("%w: token lifetime exceeds %s", ErrUnauthenticated, a.cfg.MaxTTL)
	}
	p := Principal{Role: claims.Role, Subject: claims.Subject}
	// The bounds the validator applied (iat and exp are required, nbf
	// optional), so a cache hit accepts exactly when a verification would.
	notBefore := claims.IssuedAt.Time
	if claims.NotBefore != nil && claims.NotBefore.After(notBefore) {
		notBefore = claims.NotBefore.Time
	}
	e := &tokenEntry{principal: p, keys: set,
		notBefore: notBefore.Add(-a.cfg.Leeway), notAfter: claims.ExpiresAt.Add(a.cfg.Leeway)}
	return p, e, nil
}

// errUnknownKey marks a kid not in the key set.
var errUnknownKey = errors.New("unknown signing key")

// keyFunc picks the key of set that must have signed t; the signature
// check follows at once.
func (a *JWTAuthenticator) keyFunc(t *jwt.Token, set *KeySet) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errUnknownKey
	}
	key, alg, ok := set.Lookup(kid)
	if !ok {
		if r, ok := a.keys.(interface{ RequestRefresh() }); ok {
			r.RequestRefresh()
		}
		return nil, errUnknownKey
	}
	// The key decides the algorithm, not the token header.
	if t.Method.Alg() != alg {
		return nil, errors.New("algorithm does not match the key")
	}
	switch key.(type) {
	case ed25519.PublicKey, *rsa.PublicKey:
		a.verifications.Add(1)
		return key, nil
	}
	return nil, errUnknownKey
}

// describeJWTError maps a jwt error to a fixed phrase: library messages
// can quote decoded token content, which must not reach logs or clients.
func describeJWTError(err error) string {
	switch {
	case errors.Is(err, errUnknownKey):
		return "unknown signing key"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token cannot be verified"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "invalid signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "required claim missing"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return "invalid claims"
	}
	return "invalid token"
}
