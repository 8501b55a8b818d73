package sim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

// Run drives the deployment: drivers connect first, then riders request at
// the configured rate; after the request phase the run waits up to Grace for
// rides in flight, then stops every app and returns what it measured.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	transport := cfg.Transport
	if transport == nil {
		transport = insecure.NewCredentials()
	}
	riderConn, err := dialAll(cfg.RiderTargets, transport)
	if err != nil {
		return Stats{}, err
	}
	defer riderConn.Close()
	driverConn, err := dialAll(cfg.DriverTargets, transport)
	if err != nil {
		return Stats{}, err
	}
	defer driverConn.Close()

	rec := newRecorder()
	rec.drivers = cfg.Drivers
	city := newCity(cfg)

	driversCtx, stopDrivers := context.WithCancel(ctx)
	defer stopDrivers()
	var drivers sync.WaitGroup
	for i := range cfg.Drivers {
		d := &driverAgent{
			id:     fmt.Sprintf("%s-driver-%d", cfg.idPrefix(), i),
			cfg:    cfg,
			client: driverv1.NewDriverServiceClient(driverConn),
			rec:    rec,
			rng:    city.driverRand(i),
		}
		d.pos = city.place(d.rng)
		d.heading = d.rng.Float64() * 360
		drivers.Add(1)
		go func() { defer drivers.Done(); d.run(driversCtx) }()
	}
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			defer close(progressStopped)
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					cfg.Progress(rec.snapshot())
				case <-progressDone:
					return
				}
			}
		}()
	} else {
		close(progressStopped)
	}
	// No Progress call may follow Run's return (it would race with the
	// caller printing the summary).
	defer func() { close(progressDone); <-progressStopped }()
	// Give the drivers one location round to be indexed.
	select {
	case <-time.After(2 * cfg.LocationInterval):
	case <-ctx.Done():
	}

	ridesCtx, stopRides := context.WithCancel(ctx)
	defer stopRides()
	var rides sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	ticker := time.NewTicker(interval)
	deadline := time.After(cfg.Duration)
request:
	for n := 0; cfg.Requests == 0 || n < cfg.Requests; n++ {
		req := city.nextRequest()
		r := &ride{
			riderID: fmt.Sprintf("%s-rider-%d", cfg.idPrefix(), n),
			cfg:     cfg,
			client:  riderv1.NewRiderServiceClient(riderConn),
			rec:     rec,
			pickup:  req.pickup,
			dropoff: req.dropoff,
			cancel:  req.cancel,
		}
		rides.Add(1)
		go func(key string) { defer rides.Done(); r.run(ridesCtx, key) }(fmt.Sprintf("sim-%d-%d", cfg.Seed, n))
		select {
		case <-ticker.C:
		case <-deadline:
			break request
		case <-ctx.Done():
			break request
		}
	}
	ticker.Stop()
	ridesDone := make(chan struct{})
	go func() { rides.Wait(); close(ridesDone) }()
	select {
	case <-ridesDone:
	case <-time.After(cfg.Grace):
		stopRides() // rides still open now count as lost
		<-ridesDone
	case <-ctx.Done():
		stopRides()
		<-ridesDone
	}
	stopDrivers()
	drivers.Wait()
	return rec.final(), nil
}

// dialAll returns one connection balancing round-robin over every target, so
// an app fails over when an instance drains, as behind a load balancer.
func dialAll(targets []string, transport credentials.TransportCredentials) (*grpc.ClientConn, error) {
	r := manual.NewBuilderWithScheme("sim")
	addrs := make([]resolver.Address, len(targets))
	for i, t := range targets {
		addrs[i] = resolver.Address{Addr: t}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	cc, err := grpc.NewClient("sim:///hexride",
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(transport),
	)
	if err != nil {
		return nil, fmt.Errorf("sim: dial %v: %w", targets, err)
	}
	return cc, nil
}
