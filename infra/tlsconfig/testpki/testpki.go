// Package testpki mints a throwaway certificate authority and server and
// client certificates as PEM files, for tests and `hexride dev`'s mTLS
// mode. Keys are ECDSA P-256; nothing here is fit for production.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a self-signed certificate authority whose files live in Dir.
type CA struct {
	Dir      string
	CertFile string // ca.pem
	Cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

// Pair names the files of an issued certificate.
type Pair struct {
	CertFile string
	KeyFile  string
	CAFile   string
	Cert     *x509.Certificate
}

// Validity of issued certificates.
const validity = 24 * time.Hour

// NewCA creates a CA in dir (created 0700) and writes ca.pem.
func NewCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "hexride test CA", Organization: []string{"hexride"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	ca := &CA{Dir: dir, CertFile: filepath.Join(dir, "ca.pem"), Cert: cert, key: key}
	if err := writePEM(ca.CertFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// IssueServer issues a server certificate for hosts (DNS names or IPs;
// default localhost and 127.0.0.1) into server.pem / server-key.pem,
// replacing earlier ones (a rotation).
func (ca *CA) IssueServer(hosts ...string) (Pair, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	tmpl := ca.leafTemplate("hexride server")
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, "server")
}

// IssueClient issues a client certificate for service name (URI SAN
// spiffe://hexride/service/<name>, CN service:<name>) into
// client-<name>.pem / client-<name>-key.pem.
func (ca *CA) IssueClient(name string) (Pair, error) {
	tmpl := ca.leafTemplate("service:" + name)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	u, err := url.Parse("spiffe://hexride/service/" + name)
	if err != nil {
		return Pair{}, fmt.Errorf("testpki: %w", err)
	}
	tmpl.URIs = []*url.URL{u}
	return ca.issue(tmpl, "client-"+name)
}

// IssueClientCN issues a client certificate with only the common name cn
// (no URI SAN) into client-<file>.pem.
func (ca *CA) IssueClientCN(file, cn string) (Pair, error) {
	tmpl := ca.leafTemplate(cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tmpl, "client-"+file)
}

func (ca *CA) leafTemplate(cn string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"hexride"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (ca *CA) issue(tmpl *x509.Certificate, base string) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("testpki: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return Pair{}, fmt.Errorf("testpki: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Pair{}, fmt.Errorf("testpki: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("testpki: %w", err)
	}
	p := Pair{
		CertFile: filepath.Join(ca.Dir, base+".pem"),
		KeyFile:  filepath.Join(ca.Dir, base+"-key.pem"),
		CAFile:   ca.CertFile,
		Cert:     cert,
	}
	// Key first, then certificate: a reloader polling in between sees a
	// mismatched pair, fails, and retries on its next tick.
	if err := writePEM(p.KeyFile, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return Pair{}, err
	}
	if err := writePEM(p.CertFile, "CERTIFICATE", der, 0o644); err != nil {
		return Pair{}, err
	}
	return p, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// writePEM writes atomically (temp file + rename).
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("testpki: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("testpki: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	return nil
}
