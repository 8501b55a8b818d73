package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Development token settings: what `hexride dev` verifies and `hexride
// token`/`hexride sim` mint.
const (
	DevIssuer   = "hexride-dev"
	DevAudience = "hexride"
)

// Files in a dev key directory.
const (
	DevKeyFile  = "signing-key.pem" // PKCS#8 Ed25519 private key, mode 0600
	DevJWKSFile = "jwks.json"       // the matching public JWK Set
)

// DevKey is a development signing key and where it lives.
type DevKey struct {
	Dir     string
	Kid     string // RFC 7638 thumbprint of the public key
	Private ed25519.PrivateKey
}

// JWKSPath is the path of the key's JWK Set (a JWKSConfig.File).
func (k *DevKey) JWKSPath() string { return filepath.Join(k.Dir, DevJWKSFile) }

// KeySet returns the key's public half as a KeySet.
func (k *DevKey) KeySet() *KeySet {
	return &KeySet{keys: map[string]jwk{k.Kid: {key: k.Private.Public(), alg: AlgEdDSA}}}
}

// DefaultDevKeyDir is $XDG_CONFIG_HOME/hexride/dev, or the OS user config
// directory's hexride/dev (~/.config/hexride/dev on Linux).
func DefaultDevKeyDir() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "hexride", "dev"), nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("auth: find the dev key directory: %w", err)
	}
	return filepath.Join(base, "hexride", "dev"), nil
}

// GenerateDevKey writes a new Ed25519 key and its jwks.json into dir
// (created 0700), replacing any key there. Tokens signed by the old key
// stop verifying once verifiers reload jwks.json.
func GenerateDevKey(dir string) (*DevKey, error) {
	k, keyPEM, err := newDevKey(dir)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, DevKeyFile), keyPEM, 0o600, true); err != nil {
		return nil, err
	}
	if err := writeDevJWKS(k); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadOrCreateDevKey loads the key in dir, creating it if there is none.
// Concurrent callers (hexride dev and hexride sim starting together) end up
// with the same key. It rewrites jwks.json when it is missing.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	if k, err := LoadDevKey(dir); err == nil {
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, keyPEM, err := newDevKey(dir)
	if err != nil {
		return nil, err
	}
	// No-clobber: if another process won the race, use its key.
	if err := writeFileAtomic(filepath.Join(dir, DevKeyFile), keyPEM, 0o600, false); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadDevKey(dir)
		}
		return nil, err
	}
	if err := writeDevJWKS(k); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadDevKey loads the key in dir; the error wraps os.ErrNotExist when
// there is none. It refuses a key file readable by group or others, and
// writes jwks.json if it is missing.
func LoadDevKey(dir string) (*DevKey, error) {
	path := filepath.Join(dir, DevKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("auth: dev key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("auth: dev key %s is accessible by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: dev key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("auth: dev key %s is not a PEM private key", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: dev key %s: %w", path, err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: dev key %s is not Ed25519", path)
	}
	k := &DevKey{Dir: dir, Kid: Ed25519Thumbprint(priv.Public().(ed25519.PublicKey)), Private: priv}
	if _, err := os.Stat(k.JWKSPath()); errors.Is(err, os.ErrNotExist) {
		if err := writeDevJWKS(k); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func newDevKey(dir string) (*DevKey, []byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("auth: dev key directory: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: generate dev key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: encode dev key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return &DevKey{Dir: dir, Kid: Ed25519Thumbprint(pub), Private: priv}, keyPEM, nil
}

func writeDevJWKS(k *DevKey) error {
	doc, err := MarshalJWKS(Ed25519JWK(k.Private.Public().(ed25519.PublicKey), k.Kid))
	if err != nil {
		return fmt.Errorf("auth: encode dev JWKS: %w", err)
	}
	return writeFileAtomic(k.JWKSPath(), append(doc, '\n'), 0o644, true)
}

// writeFileAtomic writes data to a temporary file in the same directory and
// moves it into place, so readers never see half a file. Without replace it
// fails with os.ErrExist when path exists.
func writeFileAtomic(path string, data []byte, mode os.FileMode, replace bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	if replace {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("auth: write %s: %w", path, err)
		}
		return nil
	}
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	return nil
}

// Mint errors.
var (
	ErrMintKey = errors.New("auth: mint needs an Ed25519 or RSA (≥2048-bit) private key")
	ErrMintArg = errors.New("auth: mint needs kid, issuer, audience, a known role, a subject and a positive ttl")
)

// Mint signs an access token for role:subject valid from now for ttl:
// EdDSA with an Ed25519 key, RS256 with an RSA key. The token carries iss,
// aud, sub, role, iat, nbf, exp, a random jti and kid in its header.
func Mint(key crypto.Signer, kid, issuer, audience string, role Role, subject string, ttl time.Duration, now time.Time) (string, error) {
	var method jwt.SigningMethod
	switch k := key.(type) {
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return "", ErrMintKey
		}
		method = jwt.SigningMethodEdDSA
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return "", ErrMintKey
		}
		method = jwt.SigningMethodRS256
	default:
		return "", ErrMintKey
	}
	if kid == "" || issuer == "" || audience == "" || !validRole(role) || subject == "" || len(subject) > 128 || ttl <= 0 {
		return "", ErrMintArg
	}
	var jti [12]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	now = now.Truncate(time.Second)
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        fmt.Sprintf("%x", jti),
		},
		Role: role,
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return s, nil
}
