package sim

import (
	"context"

	"github.com/hexride/hexride/infra/auth"
)

// Credentials gives a call's context what makes it act as p (a token).
type Credentials func(ctx context.Context, p auth.Principal) (context.Context, error)

// DevCredentials mints tokens for the simulated apps from a development key
// (what `hexride dev` verifies against).
func DevCredentials(key *auth.DevKey) (Credentials, error) {
	m, err := auth.NewDevMinter(key, 0)
	if err != nil {
		return nil, err
	}
	return m.OutgoingContext, nil
}

// HeaderCredentials sends the development principal header (for platforms
// started with node.Security.DevHeader, in tests).
func HeaderCredentials(ctx context.Context, p auth.Principal) (context.Context, error) {
	return auth.OutgoingContext(ctx, p), nil
}

// as returns ctx acting as p; a credential failure is counted as an error
// and the call goes out without credentials (and fails Unauthenticated).
func (c Config) as(ctx context.Context, rec *recorder, p auth.Principal) context.Context {
	creds := c.Credentials
	if creds == nil {
		creds = HeaderCredentials
	}
	out, err := creds(ctx, p)
	if err != nil {
		rec.error(err)
		return ctx
	}
	return out
}
