package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/hexride/hexride/infra/audit"
	"github.com/hexride/hexride/infra/auth"
)

// DispatcherHeader names the dispatcher a request acts for (until token
// authentication replaces it).
const DispatcherHeader = "X-Hexride-Dispatcher"

// tokenKey carries a request's verified bearer token in its context.
type tokenKey struct{}

// bearerToken is the token a request presents: the Authorization header,
// else the access_token query parameter (EventSource cannot set headers).
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return r.URL.Query().Get("access_token")
}

// identify returns the principal a request acts as, and the request
// carrying the dispatcher's token for the calls made for it. This is the
// one place that decides identity.
func (c *Console) identify(r *http.Request) (auth.Principal, *http.Request, error) {
	if tok := bearerToken(r); tok != "" && c.deps.Verify != nil {
		p, err := c.deps.Verify(tok)
		if err != nil {
			return auth.Principal{}, r, errUnauthorized("invalid dispatcher token")
		}
		if p.Role != auth.RoleDispatcher {
			return auth.Principal{}, r, errForbidden("the console is for dispatchers; this token is a " + string(p.Role) + "'s")
		}
		return p, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)), nil
	}
	if c.cfg.RequireToken {
		return auth.Principal{}, r, errUnauthorized("a dispatcher token is required")
	}
	p, err := c.dispatcher(r)
	return p, r, err
}

// dispatcher is the development identity: the X-Hexride-Dispatcher header,
// else Config.DispatcherID.
func (c *Console) dispatcher(r *http.Request) (auth.Principal, error) {
	id := c.cfg.DispatcherID
	if r != nil {
		if h := r.Header.Get(DispatcherHeader); h != "" {
			id = h
		}
	}
	if len(id) > maxIDLen {
		return auth.Principal{}, errBadRequest(fmt.Sprintf("%s: at most %d bytes", DispatcherHeader, maxIDLen))
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return auth.Principal{}, errBadRequest(DispatcherHeader + ": printable characters without spaces only")
		}
	}
	return auth.Principal{Role: auth.RoleDispatcher, Subject: id}, nil
}

// callContext returns ctx bounded by CallTimeout that sends the
// dispatcher's principal on calls made with it.
func (c *Console) callContext(ctx context.Context, p auth.Principal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	return c.as(ctx, p), cancel
}

// as returns ctx carrying p's credentials. A failure to make them is
// logged; the call then fails Unauthenticated, which the caller reports.
func (c *Console) as(ctx context.Context, p auth.Principal) context.Context {
	if tok, ok := ctx.Value(tokenKey{}).(string); ok {
		return auth.BearerContext(ctx, tok) // the dispatcher's own token
	}
	if c.deps.Outgoing == nil {
		return auth.OutgoingContext(ctx, p)
	}
	out, err := c.deps.Outgoing(ctx, p)
	if err != nil {
		c.log.ErrorContext(ctx, "cannot make credentials for the dispatcher", "dispatcher", p.Subject, "err", err)
		return ctx
	}
	return out
}

// audited records a dispatcher action and its outcome in the audit log.
func (c *Console) audited(action string, fn apiFunc) apiFunc {
	return func(r *http.Request, p auth.Principal) (any, error) {
		v, err := fn(r, p)
		if c.deps.Audit != nil {
			e := audit.Event{Actor: p.String(), Action: action, Target: r.PathValue("id"), Outcome: audit.OutcomeSucceeded}
			if err != nil {
				e.Outcome, e.Reason = audit.OutcomeFailed, err.Error()
			}
			c.deps.Audit.Record(r.Context(), e)
		}
		return v, err
	}
}

// background is the principal of the console's own calls (watch, snapshots).
func (c *Console) background() auth.Principal {
	return auth.Principal{Role: auth.RoleDispatcher, Subject: c.cfg.DispatcherID}
}

// outgoing returns ctx that sends the console's own principal.
func (c *Console) outgoing(ctx context.Context) context.Context {
	return c.as(ctx, c.background())
}
