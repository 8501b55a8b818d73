package trip_test

import (
	"cmp"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hexride/hexride/infra/natsserver"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/memstore"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// watchMode is how watches learn of commits: polling the store's event
// log, or the trip event stream (an embedded NATS server, a relay per
// instance publishing the store's outbox). The watch tests run in both.
type watchMode struct {
	name   string
	stream bool
}

var watchModes = []watchMode{{"poll", false}, {"stream", true}}

// watchEnv is one test's setup in a mode.
type watchEnv struct {
	t    *testing.T
	mode watchMode
	url  string // the NATS server (stream mode)
	// relayInterval is the relays' idle poll (0: 5 ms, fast tests).
	relayInterval time.Duration
}

func newWatchEnv(t *testing.T, m watchMode) *watchEnv {
	t.Helper()
	e := &watchEnv{t: t, mode: m}
	if m.stream {
		srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		e.url = srv.URL()
	}
	return e
}

func (e *watchEnv) memStore() store.Store {
	if e.mode.stream {
		return memstore.New(memstore.WithOutbox())
	}
	return memstore.New()
}

func (e *watchEnv) sqlStore(dsn string) store.Store {
	if e.mode.stream {
		return openSQL(e.t, dsn, sqlstore.WithOutbox())
	}
	return openSQL(e.t, dsn)
}

// server returns a trip server over st for the mode; in stream mode it
// also runs a relay for st (stopped at cleanup).
func (e *watchEnv) server(st store.Store, opts ...trip.Option) *trip.Server {
	t := e.t
	t.Helper()
	if e.mode.stream {
		nc, err := nats.Connect(e.url, nats.ReconnectBufSize(-1))
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		cfg := trip.DefaultRelayConfig("test-" + uuid.NewString())
		cfg.Interval = cmp.Or(e.relayInterval, 5*time.Millisecond)
		cfg.LeaseTTL = 3 * time.Second
		relay, err := trip.NewRelay(st.(store.Outbox), js, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { relay.Run(ctx) })
		// Cleanups run last-in first-out: the server (registered by the
		// caller after this) closes first, then the relay and connection.
		t.Cleanup(func() {
			cancel()
			wg.Wait()
			nc.Close()
		})
		opts = append(opts, trip.WithEventStream(js))
	}
	srv, err := trip.NewServer(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func (e *watchEnv) serve(st store.Store, opts ...trip.Option) *tripclient.Client {
	e.t.Helper()
	return serveServer(e.t, e.server(st, opts...))
}
