package console

import (
	"context"
	"fmt"
	"net/http"
	"unicode"

	"github.com/hexride/hexride/infra/audit"
	"github.com/hexride/hexride/infra/auth"
)

// DispatcherHeader names the dispatcher a request acts for (until token
// authentication replaces it).
const DispatcherHeader = "X-Hexride-Dispatcher"

// dispatcher returns the principal a request acts as. This is the one place
// that decides identity: swap it for token verification when that lands.
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
