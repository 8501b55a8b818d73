// Package tlsconfig builds the TLS configurations hexride servers and
// clients use: TLS 1.3 only, mutual TLS between services, and certificates
// and CAs that reload from disk without a restart (new handshakes use the
// new files; established connections keep theirs).
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// Config names the PEM files of one identity and its trust anchors.
type Config struct {
	// CertFile and KeyFile are this process's certificate chain and key.
	CertFile string
	KeyFile  string
	// CAFile holds the CA certificates peers must chain to: client
	// certificates on a server, server certificates on a client.
	CAFile string
	// PollInterval re-checks the files' modification times and reloads on
	// change; 0 disables polling (call Reload, e.g. on SIGHUP).
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Config errors.
var (
	ErrMissingFile  = errors.New("tlsconfig: cert, key and CA files are required")
	ErrBadInterval  = errors.New("tlsconfig: poll interval must not be negative")
	ErrNoCACerts    = errors.New("tlsconfig: CA file holds no certificates")
	ErrCertNotValid = errors.New("tlsconfig: certificate is outside its validity period")
)

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.CertFile == "" || c.KeyFile == "" || c.CAFile == "" {
		return ErrMissingFile
	}
	if c.PollInterval < 0 {
		return ErrBadInterval
	}
	return nil
}

// material is one consistent load of the files.
type material struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

type stamp struct {
	mod  time.Time
	size int64
}

// Reloader holds the current certificate and CA pool and swaps them when
// the files change. Configs it returns read it at every handshake.
type Reloader struct {
	cfg     Config
	current atomic.Pointer[material]

	mu     sync.Mutex // serialises reloads; guards stamps
	stamps [3]stamp

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// NewReloader loads the files (failing if they do not load) and, with a
// PollInterval, polls them until Close or ctx ends.
func NewReloader(ctx context.Context, cfg Config) (*Reloader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{cfg: cfg, done: make(chan struct{})}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	if cfg.PollInterval == 0 {
		r.cancel = func() {}
		close(r.done)
		return r, nil
	}
	ctx, r.cancel = context.WithCancel(ctx)
	go r.poll(ctx)
	return r, nil
}

// Reload re-reads the files now. On failure the previous certificate and
// pool stay in use and the error says why.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps, _ := r.statAll()
	m, err := load(r.cfg)
	if err != nil {
		return err
	}
	r.current.Store(m)
	r.stamps = stamps
	return nil
}

// Close stops polling and waits for the poller.
func (r *Reloader) Close() error {
	r.once.Do(func() { r.cancel() })
	<-r.done
	return nil
}

// Certificate is the current certificate.
func (r *Reloader) Certificate() *tls.Certificate { return r.current.Load().cert }

// Pool is the current CA pool.
func (r *Reloader) Pool() *x509.CertPool { return r.current.Load().pool }

func (r *Reloader) statAll() ([3]stamp, error) {
	var out [3]stamp
	for i, f := range []string{r.cfg.CertFile, r.cfg.KeyFile, r.cfg.CAFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return out, err
		}
		out[i] = stamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

func (r *Reloader) poll(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		stamps, err := r.statAll()
		changed := err == nil && stamps != r.stamps
		r.mu.Unlock()
		if !changed {
			continue
		}
		if err := r.Reload(); err != nil {
			// Mid-rotation (cert written, key not yet) lands here; the next
			// tick retries since the stamps did not advance.
			r.cfg.Logger.Warn("TLS reload failed; keeping the current certificate", "cert", r.cfg.CertFile, "error", err)
			continue
		}
		r.cfg.Logger.Info("TLS certificate reloaded", "cert", r.cfg.CertFile)
	}
}

func load(cfg Config) (*material, error) {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: load %s / %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	now := time.Now()
	if cert.Leaf != nil && (now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter)) {
		return nil, fmt.Errorf("%w: %s", ErrCertNotValid, cfg.CertFile)
	}
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: load CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: %s", ErrNoCACerts, cfg.CAFile)
	}
	return &material{cert: &cert, pool: pool}, nil
}

// ClientAuth is how a server treats client certificates.
type ClientAuth int

// Client certificate modes. Every mode that accepts a certificate verifies
// it against the CA pool; there is no mode trusting an unverified one.
const (
	// RequireClientCert: mutual TLS; a client without a valid certificate
	// is refused in the handshake (internal-only ports).
	RequireClientCert ClientAuth = iota
	// VerifyClientCertIfGiven: a presented certificate must verify, but
	// clients may have none (a port shared by apps with bearer tokens and
	// services with certificates).
	VerifyClientCertIfGiven
	// NoClientCert: server authentication only.
	NoClientCert
)

// ServerConfig returns a server configuration: TLS 1.3, the current
// certificate at every handshake, and client certificates per mode,
// verified against the CA pool current at that handshake.
func (r *Reloader) ServerConfig(mode ClientAuth) *tls.Config {
	build := func() *tls.Config {
		m := r.current.Load()
		c := &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{*m.cert},
			NextProtos:   []string{"h2"},
		}
		switch mode {
		case NoClientCert:
		case VerifyClientCertIfGiven:
			c.ClientAuth = tls.VerifyClientCertIfGiven
			c.ClientCAs = m.pool
		default:
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = m.pool
		}
		return c
	}
	base := build()
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return build(), nil }
	return base
}

// ClientConfig returns a client configuration: TLS 1.3, presenting the
// current certificate (mutual TLS), and verifying the server against the CA
// pool current now and serverName (empty: the name dialled). The pool is a
// snapshot — tls.Config cannot change RootCAs per handshake — so gRPC
// clients should use ClientCredentials, which takes a fresh one at every
// handshake.
func (r *Reloader) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		RootCAs:    r.current.Load().pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.current.Load().cert, nil
		},
	}
}

// ServerCredentials are gRPC server transport credentials over
// ServerConfig (grpc.Creds).
func (r *Reloader) ServerCredentials(mode ClientAuth) credentials.TransportCredentials {
	return credentials.NewTLS(r.ServerConfig(mode))
}

// ClientCredentials are gRPC client transport credentials
// (grpc.WithTransportCredentials) that build each handshake's config from
// the current certificate and CA pool, so both reload for new connections.
func (r *Reloader) ClientCredentials(serverName string) credentials.TransportCredentials {
	return &clientCreds{r: r, serverName: serverName}
}

type clientCreds struct {
	r          *Reloader
	serverName string
}

func (c *clientCreds) current() credentials.TransportCredentials {
	return credentials.NewTLS(c.r.ClientConfig(c.serverName))
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.current().ClientHandshake(ctx, authority, conn)
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsconfig: client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo { return c.current().Info() }

func (c *clientCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

//nolint:staticcheck // required by the interface
func (c *clientCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}
