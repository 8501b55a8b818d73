// Package natsserver runs a NATS server with JetStream inside the process,
// on loopback at a random port: `hexride dev` uses it so the trip event
// stream needs nothing external, and unit tests use it for the same reason.
// Production points at the operator's NATS cluster instead (hexride serve
// --nats); tests of real failure modes run the nats-server binary as a
// separate process (natstest).
package natsserver

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv     *server.Server
	tempDir string
}

// Options configures Start.
type Options struct {
	// StoreDir holds JetStream's files; empty means a temporary directory
	// removed by Close.
	StoreDir string
	// Port is the client port on 127.0.0.1; 0 picks a free one.
	Port int
}

// Start starts a NATS server with JetStream on 127.0.0.1 and waits until it
// accepts connections.
func Start(o Options) (*Embedded, error) {
	e := &Embedded{}
	dir := o.StoreDir
	if dir == "" {
		d, err := os.MkdirTemp("", "hexride-nats-")
		if err != nil {
			return nil, fmt.Errorf("nats: store dir: %w", err)
		}
		dir, e.tempDir = d, d
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "hexride-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		// A development server: small limits keep it from growing.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
	})
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("nats: %w", err)
	}
	e.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		e.Close()
		return nil, errors.New("nats: embedded server not ready within 10s")
	}
	return e, nil
}

// URL is the client URL (nats://127.0.0.1:port).
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Close shuts the server down, waits for it and removes a temporary store.
func (e *Embedded) Close() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
	e.cleanup()
}

func (e *Embedded) cleanup() {
	if e.tempDir != "" {
		_ = os.RemoveAll(e.tempDir)
	}
}
