package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Service identities in client certificates.
const (
	// SPIFFEServicePrefix starts a URI SAN naming a hexride service:
	// spiffe://hexride/service/<name>.
	SPIFFEServicePrefix = "spiffe://hexride/service/"
	// CNServicePrefix starts a subject common name naming one: service:<name>.
	CNServicePrefix = "service:"
)

// PeerCertAuthenticator authenticates the mTLS peer: a client certificate
// the TLS handshake verified against the server's client CA, naming a
// service by URI SAN spiffe://hexride/service/<name> or, failing that, by
// CN service:<name>, is Principal{RoleService, name}. Unverified
// certificates (no verified chain) are never trusted.
type PeerCertAuthenticator struct{}

var _ Authenticator = PeerCertAuthenticator{}

// Authenticate implements Authenticator.
func (PeerCertAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Principal{}, errNoPeerCert
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Principal{}, errNoPeerCert
	}
	leaf := info.State.VerifiedChains[0][0]
	name, ok := ServiceNameFromCert(leaf)
	if !ok {
		return Principal{}, fmt.Errorf("%w: client certificate names no hexride service", ErrUnauthenticated)
	}
	return Principal{Role: RoleService, Subject: name}, nil
}

var errNoPeerCert = fmt.Errorf("%w: no verified client certificate", ErrUnauthenticated)

// ServiceNameFromCert returns the service a certificate names (URI SAN
// first, then CN). Names are 1–128 characters of [A-Za-z0-9._-].
func ServiceNameFromCert(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if s := u.String(); strings.HasPrefix(s, SPIFFEServicePrefix) {
			name := strings.TrimPrefix(s, SPIFFEServicePrefix)
			if validServiceName(name) && u.RawQuery == "" && u.Fragment == "" {
				return name, true
			}
		}
	}
	if name, ok := strings.CutPrefix(c.Subject.CommonName, CNServicePrefix); ok && validServiceName(name) {
		return name, true
	}
	return "", false
}

func validServiceName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// CombinedConfig configures a CombinedAuthenticator.
type CombinedConfig struct {
	// PeerCerts trusts verified mTLS client certificates naming a service.
	PeerCerts bool
	// Bearer verifies bearer tokens (a *JWTAuthenticator); nil disables
	// them.
	Bearer Authenticator
	// AllowDevHeader also trusts the x-hexride-principal header when a call
	// has neither a service certificate nor a bearer token. Development
	// only: anyone reaching the port can claim any identity.
	AllowDevHeader bool
}

// ErrNoAuthMethod is returned by NewCombinedAuthenticator with nothing
// enabled.
var ErrNoAuthMethod = errors.New("auth: no authentication method enabled")

// CombinedAuthenticator tries, in order: the mTLS peer's service identity;
// the bearer token (a present but invalid token fails the call, it does not
// fall through); the dev header, only if enabled.
//
// A connection presenting a service certificate acts as that service
// whatever tokens its calls carry, so a process forwarding an end user's
// call must not hold a service certificate on that connection if the
// user's identity should count.
type CombinedAuthenticator struct {
	cfg CombinedConfig
}

var _ Authenticator = (*CombinedAuthenticator)(nil)

// NewCombinedAuthenticator returns the authenticator for cfg.
func NewCombinedAuthenticator(cfg CombinedConfig) (*CombinedAuthenticator, error) {
	if !cfg.PeerCerts && cfg.Bearer == nil && !cfg.AllowDevHeader {
		return nil, ErrNoAuthMethod
	}
	return &CombinedAuthenticator{cfg: cfg}, nil
}

// Authenticate implements Authenticator.
func (a *CombinedAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	if a.cfg.PeerCerts {
		if p, err := (PeerCertAuthenticator{}).Authenticate(ctx); err == nil {
			return p, nil
		}
	}
	if a.cfg.Bearer != nil {
		p, err := a.cfg.Bearer.Authenticate(ctx)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, errNoBearer) {
			return Principal{}, err
		}
	}
	if a.cfg.AllowDevHeader {
		return HeaderAuthenticator{}.Authenticate(ctx)
	}
	return Principal{}, ErrUnauthenticated
}
