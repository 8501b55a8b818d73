package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hexride/hexride/infra/audit"
	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/ratelimit"
	"github.com/hexride/hexride/infra/tlsconfig"
)

// Security is how a node authenticates callers, secures its links and
// limits abuse.
type Security struct {
	// DevHeader trusts the x-hexride-principal header instead of tokens:
	// for in-process tests only, never on a reachable port.
	DevHeader bool
	// JWKSFile or JWKSURL holds the keys that verify bearer tokens (JWT,
	// EdDSA or RS256); Issuer and Audience must match the tokens'.
	JWKSFile, JWKSURL string
	Issuer, Audience  string
	// ServiceKeyDir holds a signing key (hexride's dev key format) whose
	// tokens identify this node to its peers when no client certificate
	// does; its public key must be in the peers' JWKS.
	ServiceKeyDir string
	// TokenCacheSize bounds the cache of verified bearer tokens (a token
	// seen again is not re-verified until it expires or the JWKS changes):
	// 0 means auth.DefaultTokenCacheSize, negative turns it off.
	TokenCacheSize int
	// CertFile and KeyFile are the server certificate (TLS on the gRPC and
	// HTTP listeners); CAFile verifies peers both ways; ClientCertFile and
	// ClientKeyFile identify this node to its peers (mTLS; URI SAN
	// spiffe://hexride/service/<name>). ServerName is the name peers'
	// certificates are checked against (default "hexride"). Certificates
	// are re-read when their files change.
	CertFile, KeyFile, CAFile     string
	ClientCertFile, ClientKeyFile string
	ServerName                    string
	// RateLimit limits riders, drivers and dispatchers per principal and
	// RPC (services are exempt).
	RateLimit bool
	// Audit receives the audit log (authorization denials, dispatcher
	// actions); nil means standard error.
	Audit io.Writer
}

// Security errors.
var (
	ErrNoAuth       = errors.New("node: callers' tokens need a JWKS: set --jwks-file or --jwks-url, with --jwt-issuer and --jwt-audience")
	ErrPartialTLS   = errors.New("node: TLS needs --tls-cert, --tls-key and --tls-ca (and --tls-client-cert with --tls-client-key, which need TLS)")
	ErrNoServiceIDs = errors.New("node: peers need a service identity: set --tls-client-cert and --tls-client-key, or --service-key-dir")
)

func (s Security) tls() bool { return s.CertFile != "" || s.KeyFile != "" || s.CAFile != "" }

// Validate reports the first problem.
func (s Security) Validate() error {
	jwt := s.JWKSFile != "" || s.JWKSURL != ""
	if !s.DevHeader && (!jwt || s.Issuer == "" || s.Audience == "") {
		return ErrNoAuth
	}
	if s.tls() && (s.CertFile == "" || s.KeyFile == "" || s.CAFile == "") {
		return ErrPartialTLS
	}
	if (s.ClientCertFile == "") != (s.ClientKeyFile == "") || s.ClientCertFile != "" && !s.tls() {
		return ErrPartialTLS
	}
	if !s.DevHeader && s.ClientCertFile == "" && s.ServiceKeyDir == "" {
		return ErrNoServiceIDs
	}
	return nil
}

// security is a node's built security: what its server and clients use.
type security struct {
	serverOpts []grpc.ServerOption
	unary      []grpc.UnaryServerInterceptor
	stream     []grpc.StreamServerInterceptor
	dialOpts   []grpc.DialOption
	httpTLS    *tls.Config
	audit      *audit.Logger
	// outgoing gives ctx the credentials that make calls as p (the
	// console's dispatcher calls).
	outgoing func(ctx context.Context, p auth.Principal) (context.Context, error)
	// verify checks a bearer token (nil without JWT configuration).
	verify func(token string) (auth.Principal, error)
	// jwt verifies bearer tokens, with its verified-token cache (nil
	// without JWT configuration).
	jwt *auth.JWTAuthenticator
	// transport is the node's client transport credentials (its service
	// certificate, if any); anonymous verifies servers but presents no
	// certificate (the console: its calls act for dispatchers, and a
	// service certificate would outrank their tokens).
	transport, anonymous credentials.TransportCredentials
	closers              []func()
}

func (s *security) close() {
	for _, c := range s.closers {
		c()
	}
}

// buildSecurity turns the config into interceptors and credentials.
// serviceName is this node's identity when it mints its own tokens.
func buildSecurity(ctx context.Context, cfg Security, serviceName string, logger *slog.Logger) (_ *security, err error) {
	sec := &security{transport: insecure.NewCredentials(), anonymous: insecure.NewCredentials()}
	defer func() {
		if err != nil {
			sec.close()
		}
	}()
	auditOut := cfg.Audit
	if auditOut == nil {
		auditOut = os.Stderr
	}
	sec.audit = audit.New(auditOut)

	// Transport.
	if cfg.tls() {
		server, err := tlsconfig.NewReloader(ctx, tlsconfig.Config{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, CAFile: cfg.CAFile, PollInterval: 10 * time.Second, Logger: logger})
		if err != nil {
			return nil, err
		}
		sec.closers = append(sec.closers, func() { server.Close() })
		// Apps present tokens, services client certificates: one port, a
		// certificate verified when given.
		sec.serverOpts = append(sec.serverOpts, grpc.Creds(server.ServerCredentials(tlsconfig.VerifyClientCertIfGiven)))
		sec.httpTLS = server.ServerConfig(tlsconfig.NoClientCert)
		name := cfg.ServerName
		if name == "" {
			name = "hexride"
		}
		sec.anonymous = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, ServerName: name, RootCAs: server.Pool()})
		sec.transport = sec.anonymous
		if cfg.ClientCertFile != "" {
			client, err := tlsconfig.NewReloader(ctx, tlsconfig.Config{CertFile: cfg.ClientCertFile, KeyFile: cfg.ClientKeyFile, CAFile: cfg.CAFile, PollInterval: 10 * time.Second, Logger: logger})
			if err != nil {
				return nil, err
			}
			sec.closers = append(sec.closers, func() { client.Close() })
			sec.transport = client.ClientCredentials(name)
		}
	}
	sec.dialOpts = append(sec.dialOpts, grpc.WithTransportCredentials(sec.transport))

	// Authentication.
	var bearer auth.Authenticator
	if cfg.JWKSFile != "" || cfg.JWKSURL != "" {
		keys, err := auth.NewJWKSSource(ctx, auth.JWKSConfig{File: cfg.JWKSFile, URL: cfg.JWKSURL, Logger: logger})
		if err != nil {
			return nil, err
		}
		sec.closers = append(sec.closers, func() { keys.Close() })
		// One authenticator, so one verified-token cache, for the gRPC
		// interceptors and the console's HTTP identity check.
		jcfg := auth.DefaultJWTConfig(cfg.Issuer, cfg.Audience)
		if cfg.TokenCacheSize != 0 {
			jcfg.CacheSize = cfg.TokenCacheSize
		}
		jwtAuth, err := auth.NewJWTAuthenticator(jcfg, keys)
		if err != nil {
			return nil, err
		}
		bearer = jwtAuth
		sec.jwt = jwtAuth
		sec.verify = jwtAuth.Verify
	}
	// A peer whose verified client certificate names a service is
	// authenticated from its connection, before any token is parsed; apps
	// and certificate-less services (ServiceKeyDir tokens, re-sent
	// unchanged for most of their hour) go through the token cache.
	authn, err := auth.NewCombinedAuthenticator(auth.CombinedConfig{PeerCerts: cfg.tls(), Bearer: bearer, AllowDevHeader: cfg.DevHeader})
	if err != nil {
		return nil, err
	}
	authz, err := auth.NewAuthorizer(auth.AuthorizerConfig{Authenticator: authn, Logger: logger, Audit: sec.audit})
	if err != nil {
		return nil, err
	}
	sec.unary = append(sec.unary, authz.UnaryServerInterceptor())
	sec.stream = append(sec.stream, authz.StreamServerInterceptor())
	if cfg.RateLimit {
		rl := ratelimit.DefaultConfig()
		rl.ExemptRoles = []auth.Role{auth.RoleService}
		limiter, err := ratelimit.New(rl)
		if err != nil {
			return nil, err
		}
		sec.unary = append(sec.unary, limiter.UnaryServerInterceptor())
		sec.stream = append(sec.stream, limiter.StreamServerInterceptor())
	}

	// This node's identity towards its peers, and how it acts for others.
	self := auth.Principal{Role: auth.RoleService, Subject: serviceName}
	switch {
	case cfg.DevHeader:
		sec.dialOpts = append(sec.dialOpts, grpc.WithPerRPCCredentials(auth.HeaderCredentials{Principal: self}))
		sec.outgoing = func(ctx context.Context, p auth.Principal) (context.Context, error) {
			return auth.OutgoingContext(ctx, p), nil
		}
	case cfg.ServiceKeyDir != "":
		key, err := auth.LoadDevKey(cfg.ServiceKeyDir)
		if err != nil {
			return nil, fmt.Errorf("service key: %w", err)
		}
		minter, err := auth.NewMinter(auth.MinterConfig{Key: key.Private, Kid: key.Kid, Issuer: cfg.Issuer, Audience: cfg.Audience,
			TTL: time.Hour, AllowInsecure: !cfg.tls()})
		if err != nil {
			return nil, err
		}
		if cfg.ClientCertFile == "" {
			sec.dialOpts = append(sec.dialOpts, grpc.WithPerRPCCredentials(minter.PerRPCCredentials(self)))
		}
		sec.outgoing = minter.OutgoingContext
	default:
		sec.outgoing = func(context.Context, auth.Principal) (context.Context, error) {
			return nil, errors.New("this node cannot act for dispatchers: it has no signing key")
		}
	}
	return sec, nil
}
