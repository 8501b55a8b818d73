package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
)

// fleet is a set of driver apps, each with its own gRPC connection and
// Connect stream, as phones have.
type fleet struct {
	apps []*app
	// counter counts samples sent while active, less the refused ones;
	// accepted counts the samples the gateway acknowledged as taken.
	counter  *counters
	accepted atomic.Int64
	// active gates the apps' periodic samples.
	active  atomic.Bool
	refused sync.Map // reason → *atomic.Int64
	wg      sync.WaitGroup
}

// app is one driver app.
type app struct {
	id     string
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[driverv1.ConnectRequest, driverv1.ConnectResponse]
	cancel context.CancelFunc
	ready  chan struct{} // closed when the first location's ack arrived
	err    atomic.Pointer[error]

	// sendMu serializes sends (the driving goroutine's samples, settle's
	// availability changes) and guards what follows.
	sendMu sync.Mutex
	seq    uint64
	pos    point
	rng    *rand.Rand
	// pending are the seqs of location samples neither accepted nor
	// refused yet, ascending; availSeq is the seq of the latest
	// availability change, availAcked gets its ack's acceptance.
	pending    []uint64
	availSeq   uint64
	availAcked chan bool
}

// The first availability change (going online) is seq 1; locations and
// later availability changes (settle) follow.
const availabilitySeq = 1

// appDialOptions keep the client side of many mostly idle connections
// small; they do not change what the server allocates.
func appDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithReadBufferSize(8 << 10),
		grpc.WithWriteBufferSize(8 << 10),
		grpc.WithSharedWriteBuffer(true),
	}
}

// openFleet connects n driver apps named prefix-i at the given points:
// each opens Connect, goes ONLINE (STANDARD) and sends one sample, and the
// fleet waits for every ack.
func (b *bench) openFleet(ctx context.Context, addr, prefix string, start []point, seed uint64) (*fleet, error) {
	f := &fleet{apps: make([]*app, len(start)), counter: &counters{}}
	now := time.Now()
	errs := make(chan error, len(start))
	sem := make(chan struct{}, 64) // opening in parallel, bounded
	var wg sync.WaitGroup
	tokens := make([]string, len(start))
	for i := range start {
		id := fmt.Sprintf("%s-%d", prefix, i)
		tok, err := b.mint(auth.RoleDriver, id)
		if err != nil {
			return nil, err
		}
		tokens[i] = tok
		f.apps[i] = &app{id: id, pos: start[i], rng: rand.New(rand.NewPCG(seed, uint64(i))), ready: make(chan struct{}), availAcked: make(chan bool, 1)}
	}
	for i, a := range f.apps {
		tok := tokens[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f.connect(ctx, a, addr, tok, now); err != nil {
				errs <- fmt.Errorf("driver app %s: %w", a.id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		f.close()
		return nil, fmt.Errorf("%d of %d apps failed to connect; first: %w", len(all), len(start), all[0])
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for _, a := range f.apps {
		select {
		case <-a.ready:
		case <-deadline.C:
			f.close()
			return nil, fmt.Errorf("driver app %s: no ack for its first sample within 30 s", a.id)
		case <-ctx.Done():
			f.close()
			return nil, ctx.Err()
		}
		if p := a.err.Load(); p != nil {
			f.close()
			return nil, fmt.Errorf("driver app %s: %w", a.id, *p)
		}
	}
	return f, nil
}

func (f *fleet) connect(ctx context.Context, a *app, addr, token string, now time.Time) error {
	conn, err := grpc.NewClient(addr, appDialOptions()...)
	if err != nil {
		return err
	}
	a.conn = conn
	sctx, cancel := context.WithCancel(auth.BearerContext(context.WithoutCancel(ctx), token))
	a.cancel = cancel
	stream, err := driverv1.NewDriverServiceClient(conn).Connect(sctx)
	if err != nil {
		return err
	}
	a.stream = stream
	f.wg.Add(1)
	go f.receive(a)
	if err := a.online(); err != nil {
		return err
	}
	return a.sample(now, 0)
}

// online sends an availability change to ONLINE (the first is seq 1).
func (a *app) online() error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	a.seq++
	a.availSeq = a.seq
	return a.stream.Send(&driverv1.ConnectRequest{Seq: a.seq, Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{
		Availability: driverv1.Availability_AVAILABILITY_ONLINE, Product: commonv1.Product_PRODUCT_STANDARD,
	}}})
}

// sample sends the app's position moved by metres, recorded now.
func (a *app) sample(now time.Time, metres float64) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	if metres > 0 {
		a.pos = move(a.pos, metres, a.rng)
	}
	a.seq++
	a.pending = append(a.pending, a.seq)
	return a.stream.Send(&driverv1.ConnectRequest{Seq: a.seq, Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
		Position:   &commonv1.LatLng{Lat: a.pos.Lat, Lng: a.pos.Lng},
		HeadingDeg: float32(a.rng.Float64() * 360),
		SpeedMps:   float32(metres),
		AccuracyM:  5,
		RecordedAt: timestamppb.New(now),
	}}})
}

// settleAck applies an Ack to the pending samples: a refusal settles its
// own seq, an accepted location Ack every sample up to its seq (samples
// are acknowledged cumulatively). It returns how many samples it
// accepted, whether it refused one, and whether it answered the latest
// availability change (with its acceptance).
func (a *app) settleAck(ack *driverv1.Ack) (accepted int, refused, avail, availOK bool) {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	seq := ack.GetSeq()
	if seq == a.availSeq {
		return 0, false, true, ack.GetAccepted()
	}
	if !ack.GetAccepted() {
		if i, ok := slices.BinarySearch(a.pending, seq); ok {
			a.pending = slices.Delete(a.pending, i, i+1)
			return 0, true, false, false
		}
		return 0, false, false, false
	}
	n, _ := slices.BinarySearch(a.pending, seq+1)
	a.pending = a.pending[n:]
	return n, false, false, false
}

// unsettled is how many samples are neither accepted nor refused yet.
func (a *app) unsettled() int {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return len(a.pending)
}

// receive reads the app's stream: acks settle samples (accepted ones
// count), everything else is ignored.
func (f *fleet) receive(a *app) {
	defer f.wg.Done()
	readyOnce := sync.OnceFunc(func() { close(a.ready) })
	defer readyOnce()
	for {
		m, err := a.stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && a.err.Load() == nil && !closing(a) {
				a.err.Store(&err)
				f.counter.fail(fmt.Errorf("driver app %s stream: %w", a.id, err))
			}
			return
		}
		ack := m.GetAck()
		if ack == nil {
			continue
		}
		accepted, refused, avail, availOK := a.settleAck(ack)
		switch {
		case avail:
			if !availOK {
				err := fmt.Errorf("going online refused: %s", ack.GetReason())
				a.err.Store(&err)
				f.counter.fail(fmt.Errorf("driver app %s: %w", a.id, err))
			}
			select {
			case a.availAcked <- availOK:
			default:
			}
		case accepted > 0:
			f.accepted.Add(int64(accepted))
			readyOnce()
		case refused:
			// Counted as an operation when it was sent (see drive).
			f.counter.ops.Add(-1)
			f.refuse(ack.GetReason())
			readyOnce()
		}
	}
}

// settle checks that every sample sent so far was accepted or refused:
// each app sends an availability change, and the gateway acknowledges the
// samples it accepted before it answers that. It returns the samples
// accepted in all so far.
func (f *fleet) settle(ctx context.Context) (int64, error) {
	for _, a := range f.apps {
		select {
		case <-a.availAcked: // an earlier change's
		default:
		}
		if err := a.online(); err != nil {
			return 0, fmt.Errorf("driver app %s: %w", a.id, err)
		}
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for _, a := range f.apps {
		select {
		case <-a.availAcked:
		case <-deadline.C:
			return 0, fmt.Errorf("driver app %s: no ack for an availability change within 30 s", a.id)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if n := a.unsettled(); n > 0 {
			return 0, fmt.Errorf("driver app %s: %d location samples neither accepted nor refused ahead of the next Ack", a.id, n)
		}
	}
	return f.accepted.Load(), nil
}

// closing reports whether the app's stream was cancelled by the bench.
func closing(a *app) bool { return a.stream != nil && a.stream.Context().Err() != nil }

func (f *fleet) refuse(reason string) {
	if reason == "" {
		reason = "unspecified"
	}
	v, _ := f.refused.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// refusedCounts is the refusals so far by reason.
func (f *fleet) refusedCounts() map[string]int64 {
	out := map[string]int64{}
	f.refused.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// drive starts each app sending a sample (moved a few metres) every
// interval while f.active is set; phases are spread over the interval.
// It ends when ctx does.
func (f *fleet) drive(ctx context.Context, interval time.Duration) {
	paceEach(ctx, &f.wg, len(f.apps), interval, func(i int, now time.Time) {
		a := f.apps[i]
		if !f.active.Load() || a.err.Load() != nil {
			return
		}
		// 3–8 m since the last sample: a car in traffic.
		err := a.sample(now, 3+5*a.rng.Float64())
		switch {
		case err == nil:
			// An operation when sent: accepted samples are acknowledged
			// together, seconds later, so acks do not date them. A
			// refusal (answered at once) takes it back; settle checks
			// every sample was accepted or refused.
			f.counter.ops.Add(1)
		case ctx.Err() == nil && !closing(a):
			a.err.Store(&err)
			f.counter.fail(fmt.Errorf("driver app %s send: %w", a.id, err))
		}
	})
}

// paceEach calls tick(i, now) for each of n senders every interval, each
// on its own goroutine and ticker, their phases spread over the interval
// (as phones' timers are), until ctx ends; wg tracks the goroutines.
func paceEach(ctx context.Context, wg *sync.WaitGroup, n int, interval time.Duration, tick func(i int, now time.Time)) {
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sleep(ctx, interval*time.Duration(i)/time.Duration(n)) != nil {
				return
			}
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					tick(i, now)
				}
			}
		}()
	}
}

// close ends every stream and connection and waits for the goroutines.
func (f *fleet) close() {
	for _, a := range f.apps {
		if a == nil {
			continue
		}
		if a.cancel != nil {
			a.cancel()
		}
	}
	for _, a := range f.apps {
		if a != nil && a.conn != nil {
			_ = a.conn.Close()
		}
	}
	f.wg.Wait()
}
