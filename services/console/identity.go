package console

import (
	"context"
	"fmt"
	"net/http"
	"unicode"

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
	return auth.OutgoingContext(ctx, p), cancel
}

// background is the principal of the console's own calls (watch, snapshots).
func (c *Console) background() auth.Principal {
	return auth.Principal{Role: auth.RoleDispatcher, Subject: c.cfg.DispatcherID}
}

// outgoing returns ctx that sends the console's own principal.
func (c *Console) outgoing(ctx context.Context) context.Context {
	return auth.OutgoingContext(ctx, c.background())
}
