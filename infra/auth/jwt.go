package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
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
	// Now is the verifier's clock; default time.Now.
	Now func() time.Time
}

// JWTConfig errors.
var (
	ErrNoIssuer    = errors.New("auth: JWT issuer is required")
	ErrNoAudience  = errors.New("auth: JWT audience is required")
	ErrBadLeeway   = errors.New("auth: JWT leeway must be between 0 and 5m")
	ErrBadMaxTTL   = errors.New("auth: JWT max TTL must not be negative")
	ErrNoKeySource = errors.New("auth: JWT key source is required")
)

// DefaultJWTConfig returns the defaults: 30 s leeway, 24 h max TTL.
func DefaultJWTConfig(issuer, audience string) JWTConfig {
	return JWTConfig{Issuer: issuer, Audience: audience, Leeway: 30 * time.Second, MaxTTL: 24 * time.Hour}
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
type JWTAuthenticator struct {
	cfg    JWTConfig
	keys   KeySource
	parser *jwt.Parser
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
	return &JWTAuthenticator{cfg: cfg, keys: keys, parser: parser}, nil
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
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(authorizationHeader)
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

// Verify checks a raw token and returns its principal.
func (a *JWTAuthenticator) Verify(token string) (Principal, error) {
	if len(token) > maxTokenBytes {
		return Principal{}, fmt.Errorf("%w: token too long", ErrUnauthenticated)
	}
	var claims Claims
	_, err := a.parser.ParseWithClaims(token, &claims, a.keyFunc)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %s", ErrUnauthenticated, describeJWTError(err))
	}
	if a.cfg.MaxTTL > 0 && claims.ExpiresAt.Sub(claims.IssuedAt.Time) > a.cfg.MaxTTL {
		return Principal{}, fmt.Errorf("%w: token lifetime exceeds %s", ErrUnauthenticated, a.cfg.MaxTTL)
	}
	return Principal{Role: claims.Role, Subject: claims.Subject}, nil
}

// errUnknownKey marks a kid not in the key set.
var errUnknownKey = errors.New("unknown signing key")

func (a *JWTAuthenticator) keyFunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errUnknownKey
	}
	key, alg, ok := a.keys.Keys().Lookup(kid)
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
