package dispatch

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/hexride/hexride/geo"
)

// Quote errors. Verify returns errors matching exactly one of these.
var (
	// ErrQuoteMalformed: the id does not parse.
	ErrQuoteMalformed = errors.New("dispatch: malformed quote id")
	// ErrQuoteUnknownKey: signed with a key this signer does not hold
	// (rotated out, or forged).
	ErrQuoteUnknownKey = errors.New("dispatch: quote signed with unknown key")
	// ErrQuoteTampered: the signature does not match the fields.
	ErrQuoteTampered = errors.New("dispatch: quote tampered")
	// ErrQuoteExpired: the quote is genuine but past its expiry; the
	// concrete error is *QuoteExpiredError.
	ErrQuoteExpired = errors.New("dispatch: quote expired")
)

// QuoteExpiredError says when a genuine quote expired.
type QuoteExpiredError struct {
	ExpiredAt, Now time.Time
}

func (e *QuoteExpiredError) Error() string {
	return fmt.Sprintf("dispatch: quote expired at %s (now %s)", e.ExpiredAt.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrQuoteExpired) true.
func (e *QuoteExpiredError) Is(target error) bool { return target == ErrQuoteExpired }

// QuoteFields are the fare-locking facts a quote signs.
type QuoteFields struct {
	RiderID    string
	Product    string
	Pickup     geo.LatLng // rounded to 1e-7° when signed
	Dropoff    geo.LatLng
	Currency   string
	Amount     int64 // locked fare, minor units
	SurgeMilli int64
	DistanceM  int64
	DurationS  int64
}

// Quote is a signed, expiring fare. The ID carries the key id, the expiry,
// a nonce and the HMAC: "q1.<kid>.<expiry unix>.<nonce>.<mac>".
type Quote struct {
	ID string
	QuoteFields
	ExpiresAt time.Time
}

// QuoteConfig configures a QuoteSigner.
type QuoteConfig struct {
	// KeyID names the key new quotes are signed with; Keys holds every key
	// still accepted (rotation: add the new key, switch KeyID, drop the old
	// key after one TTL). Keys must be at least 32 bytes; ids are
	// [A-Za-z0-9_-]+.
	KeyID string
	Keys  map[string][]byte
	// TTL is how long a quote locks the fare (default 5m).
	TTL time.Duration
	// Rand supplies nonces; nil means crypto/rand.
	Rand io.Reader
}

// Validate checks the config.
func (c QuoteConfig) Validate() error {
	if _, ok := c.Keys[c.KeyID]; !ok {
		return fmt.Errorf("%w: signing key %q not in keys", ErrInvalidConfig, c.KeyID)
	}
	for id, k := range c.Keys {
		if id == "" || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
			return fmt.Errorf("%w: key id %q", ErrInvalidConfig, id)
		}
		if len(k) < 32 {
			return fmt.Errorf("%w: key %q shorter than 32 bytes", ErrInvalidConfig, id)
		}
	}
	if c.TTL <= 0 {
		return fmt.Errorf("%w: quote TTL %v", ErrInvalidConfig, c.TTL)
	}
	return nil
}

// QuoteSigner issues and verifies quotes.
type QuoteSigner struct {
	cfg   QuoteConfig
	clock Clock
	rand  io.Reader
}

// NewQuoteSigner builds a signer; keys are copied.
func NewQuoteSigner(cfg QuoteConfig, clock Clock) (*QuoteSigner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		return nil, fmt.Errorf("%w: nil clock", ErrInvalidConfig)
	}
	keys := make(map[string][]byte, len(cfg.Keys))
	for id, k := range cfg.Keys {
		keys[id] = append([]byte(nil), k...)
	}
	cfg.Keys = keys
	r := cfg.Rand
	if r == nil {
		r = rand.Reader
	}
	return &QuoteSigner{cfg: cfg, clock: clock, rand: r}, nil
}

const quoteVersion = "q1"

var b64 = base64.RawURLEncoding

// canonical is the signed byte string: every field length-prefixed or
// fixed-width, positions in E7, so no two distinct quotes share an encoding.
func canonical(kid string, exp int64, nonce []byte, f *QuoteFields) []byte {
	b := make([]byte, 0, 128)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	num := func(v int64) { b = binary.BigEndian.AppendUint64(b, uint64(v)) }
	str(quoteVersion)
	str(kid)
	num(exp)
	str(string(nonce))
	str(f.RiderID)
	str(f.Product)
	p, d := f.Pickup.ToE7(), f.Dropoff.ToE7()
	for _, v := range []int32{p.Lat, p.Lng, d.Lat, d.Lng} {
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	str(f.Currency)
	num(f.Amount)
	num(f.SurgeMilli)
	num(f.DistanceM)
	num(f.DurationS)
	return b
}

func (s *QuoteSigner) mac(kid string, exp int64, nonce []byte, f *QuoteFields) ([]byte, bool) {
	key, ok := s.cfg.Keys[kid]
	if !ok {
		return nil, false
	}
	h := hmac.New(sha256.New, key)
	h.Write(canonical(kid, exp, nonce, f))
	return h.Sum(nil), true
}

// Issue signs f; the quote expires TTL from the clock's now (whole seconds).
func (s *QuoteSigner) Issue(f QuoteFields) (Quote, error) {
	if err := f.Pickup.Validate(); err != nil {
		return Quote{}, fmt.Errorf("%w: pickup: %w", ErrInvalidQuery, err)
	}
	if err := f.Dropoff.Validate(); err != nil {
		return Quote{}, fmt.Errorf("%w: dropoff: %w", ErrInvalidQuery, err)
	}
	f.Pickup, f.Dropoff = f.Pickup.ToE7().LatLng(), f.Dropoff.ToE7().LatLng()
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return Quote{}, fmt.Errorf("dispatch: quote nonce: %w", err)
	}
	exp := s.clock.Now().Add(s.cfg.TTL).Unix()
	mac, _ := s.mac(s.cfg.KeyID, exp, nonce, &f)
	id := strings.Join([]string{quoteVersion, s.cfg.KeyID, strconv.FormatInt(exp, 10), b64.EncodeToString(nonce), b64.EncodeToString(mac)}, ".")
	return Quote{ID: id, QuoteFields: f, ExpiresAt: time.Unix(exp, 0)}, nil
}

// ParseQuoteExpiry reads the expiry from a quote id without verifying it
// (e.g. to drop obviously stale requests early). Never trust it alone.
func ParseQuoteExpiry(id string) (time.Time, error) {
	_, exp, _, _, err := parseQuoteID(id)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(exp, 0), nil
}

func parseQuoteID(id string) (kid string, exp int64, nonce, mac []byte, err error) {
	parts := strings.Split(id, ".")
	if len(parts) != 5 || parts[0] != quoteVersion {
		return "", 0, nil, nil, fmt.Errorf("%w: %d parts", ErrQuoteMalformed, len(parts))
	}
	if exp, err = strconv.ParseInt(parts[2], 10, 64); err != nil {
		return "", 0, nil, nil, fmt.Errorf("%w: expiry", ErrQuoteMalformed)
	}
	if nonce, err = b64.DecodeString(parts[3]); err != nil || len(nonce) != 12 {
		return "", 0, nil, nil, fmt.Errorf("%w: nonce", ErrQuoteMalformed)
	}
	if mac, err = b64.DecodeString(parts[4]); err != nil || len(mac) != sha256.Size {
		return "", 0, nil, nil, fmt.Errorf("%w: mac", ErrQuoteMalformed)
	}
	return parts[1], exp, nonce, mac, nil
}

// Verify checks that q is genuine (its fields and expiry are exactly what
// was signed) and unexpired at the clock's now. Authenticity is checked
// first, so a forged quote is reported as tampered even if also expired.
func (s *QuoteSigner) Verify(q Quote) error {
	kid, exp, nonce, mac, err := parseQuoteID(q.ID)
	if err != nil {
		return err
	}
	want, ok := s.mac(kid, exp, nonce, &q.QuoteFields)
	if !ok {
		return fmt.Errorf("%w: %q", ErrQuoteUnknownKey, kid)
	}
	if !hmac.Equal(mac, want) || !q.ExpiresAt.Equal(time.Unix(exp, 0)) {
		return ErrQuoteTampered
	}
	// Positions are signed in E7: a quote whose positions were moved by
	// less than the rounding is still the same quote, by construction.
	if now := s.clock.Now(); !now.Before(time.Unix(exp, 0)) {
		return &QuoteExpiredError{ExpiredAt: time.Unix(exp, 0), Now: now}
	}
	return nil
}
