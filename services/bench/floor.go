package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/infra/grpcserver"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
)

// Floors are servers that do none of hexride's work on the same traffic:
// what is left of a figure when nothing is authenticated, validated,
// indexed or forwarded. They say how much of a location sample's cost is
// the transport and the runtime, waking up for one small message that
// arrives alone on its connection, rather than hexride's code.
const (
	// FloorGRPC is a gRPC server with hexride's transport settings
	// (grpcserver.TransportOptions of the default config) whose Connect
	// handler only receives: no interceptors, the stock codec.
	FloorGRPC = "grpc"
	// FloorTCP is a Go TCP server reading length-prefixed frames, one
	// goroutine and one 4 KiB read buffer per connection: the Go
	// runtime's share.
	FloorTCP = "tcp"
	// Floor is the system name of floor cells in a report.
	Floor = "floor"
)

// FloorKinds lists the floor servers hexride's binary can run.
var FloorKinds = []string{FloorGRPC, FloorTCP}

const floorServing = "floor serving on "

var floorServingLine = regexp.MustCompile(floorServing + `(\S+)`)

// ServeFloor runs a floor server of the given kind on addr until ctx ends.
// It writes "floor serving on ADDR" to out once it listens.
func ServeFloor(ctx context.Context, kind, addr string, out io.Writer) error {
	return serveFloor(ctx, kind, addr, out, func() {})
}

// serveFloor is ServeFloor calling received for every sample it reads.
func serveFloor(ctx context.Context, kind, addr string, out io.Writer, received func()) error {
	if !slices.Contains(FloorKinds, kind) {
		return fmt.Errorf("bench: unknown floor server %q (kinds: %s)", kind, strings.Join(FloorKinds, ", "))
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Whatever ends the server (ctx, or a failed Serve or Accept) closes
	// the listener, ends its connections and the goroutines below, then
	// waits for them (deferred calls run last first).
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer lis.Close()
	if kind == FloorGRPC {
		gs := grpc.NewServer(grpcserver.TransportOptions(grpcserver.DefaultConfig(addr))...)
		driverv1.RegisterDriverServiceServer(gs, receiveOnly{received: received})
		wg.Add(1)
		go func() { defer wg.Done(); <-ctx.Done(); gs.Stop() }()
		fmt.Fprintln(out, floorServing+lis.Addr().String())
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) && ctx.Err() == nil {
			return err
		}
		return nil
	}
	wg.Add(1)
	go func() { defer wg.Done(); <-ctx.Done(); lis.Close() }()
	fmt.Fprintln(out, floorServing+lis.Addr().String())
	for {
		c, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			readFrames(c, received)
		}()
	}
}

// receiveOnly is the gRPC floor's driver service: Connect receives until
// the stream ends and does nothing with what it gets.
type receiveOnly struct {
	driverv1.UnimplementedDriverServiceServer
	received func()
}

func (f receiveOnly) Connect(s grpc.BidiStreamingServer[driverv1.ConnectRequest, driverv1.ConnectResponse]) error {
	for {
		if _, err := s.Recv(); err != nil {
			return nil
		}
		f.received()
	}
}

// readFrames reads 4-byte big-endian length-prefixed frames until an
// error, through one 4 KiB buffer (frames are ~60 bytes): the length is
// peeked, the frame skipped.
func readFrames(c net.Conn, received func()) {
	r := bufio.NewReaderSize(c, 4<<10)
	for {
		hdr, err := r.Peek(4)
		if err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr))
		if _, err := r.Discard(4 + n); err != nil {
			return
		}
		received()
	}
}

// startFloor starts hexride's binary as a floor server of kind.
func startFloor(ctx context.Context, kind, dir, bin string) (*server, error) {
	return startListening(ctx, "floor-"+kind, dir, bin,
		[]string{"bench", "--serve-floor", kind, "--floor-addr", "127.0.0.1:0"}, floorServingLine)
}

// floorFleet is n senders of lone samples to one floor server, each on its
// own connection, paced as the driver apps are.
type floorFleet struct {
	n       int
	send    func(i int, now time.Time) error
	closers []func()
	counter *counters
	active  atomic.Bool
	stop    context.CancelFunc // ends drive's senders
	wg      sync.WaitGroup
}

func (f *floorFleet) close() {
	if f.stop != nil {
		f.stop()
	}
	f.wg.Wait()
	for _, c := range f.closers {
		c()
	}
}

// drive sends one sample per connection per interval while f.active is
// set, as fleet.drive does for the driver apps, until ctx ends or close.
func (f *floorFleet) drive(ctx context.Context, interval time.Duration) {
	ctx, f.stop = context.WithCancel(ctx)
	paceEach(ctx, &f.wg, f.n, interval, func(i int, now time.Time) {
		if !f.active.Load() {
			return
		}
		if err := f.send(i, now); err != nil {
			if ctx.Err() == nil {
				f.counter.fail(err)
			}
			return
		}
		f.counter.ops.Add(1)
	})
}

// floorSample is a driver app's location sample, as the apps send it.
func floorSample(seq uint64, p point, rng *rand.Rand, now time.Time) *driverv1.ConnectRequest {
	return &driverv1.ConnectRequest{Seq: seq, Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
		Position:   &commonv1.LatLng{Lat: p.Lat, Lng: p.Lng},
		HeadingDeg: float32(rng.Float64() * 360),
		SpeedMps:   5,
		AccuracyM:  5,
		RecordedAt: timestamppb.New(now),
	}}}
}

// floorSender is one floor sender's state: a car moving a few metres
// between samples.
type floorSender struct {
	seq uint64
	pos point
	rng *rand.Rand
	buf []byte
}

// step moves the car and numbers its next sample.
func (s *floorSender) step() {
	s.seq++
	s.pos = move(s.pos, 3+5*s.rng.Float64(), s.rng)
}

// openFloor builds a fleet of one sender per point: dial opens sender i's
// connection and returns its send function and closer; each sender then
// sends one sample.
func openFloor(label string, start []point, seed uint64, dial func(s *floorSender) (send func(now time.Time) error, closer func(), err error)) (*floorFleet, error) {
	f := &floorFleet{n: len(start), counter: &counters{}}
	sends := make([]func(time.Time) error, len(start))
	for i, p := range start {
		send, closer, err := dial(&floorSender{pos: p, rng: rand.New(rand.NewPCG(seed, uint64(i)))})
		if err != nil {
			f.close()
			return nil, fmt.Errorf("%s %d: %w", label, i, err)
		}
		f.closers, sends[i] = append(f.closers, closer), send
	}
	f.send = func(i int, now time.Time) error { return sends[i](now) }
	for i := range start {
		if err := f.send(i, time.Now()); err != nil {
			f.close()
			return nil, fmt.Errorf("%s %d: %w", label, i, err)
		}
	}
	return f, nil
}

// openFloorGRPC opens one connection and Connect stream per point and
// sends one sample on each.
func openFloorGRPC(ctx context.Context, addr string, start []point, seed uint64) (*floorFleet, error) {
	return openFloor("floor stream", start, seed, func(s *floorSender) (func(time.Time) error, func(), error) {
		conn, err := grpc.NewClient(addr, appDialOptions()...)
		if err != nil {
			return nil, nil, err
		}
		sctx, cancel := context.WithCancel(ctx)
		closer := func() { cancel(); conn.Close() }
		stream, err := driverv1.NewDriverServiceClient(conn).Connect(sctx)
		if err != nil {
			closer()
			return nil, nil, err
		}
		return func(now time.Time) error {
			s.step()
			return stream.Send(floorSample(s.seq, s.pos, s.rng, now))
		}, closer, nil
	})
}

// openFloorTCP opens one connection per point and sends one frame holding
// a marshalled sample on each.
func openFloorTCP(ctx context.Context, addr string, start []point, seed uint64) (*floorFleet, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	return openFloor("floor connection", start, seed, func(s *floorSender) (func(time.Time) error, func(), error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		return func(now time.Time) error {
			s.step()
			b, err := proto.MarshalOptions{}.MarshalAppend(append(s.buf[:0], 0, 0, 0, 0), floorSample(s.seq, s.pos, s.rng, now))
			if err != nil {
				return err
			}
			binary.BigEndian.PutUint32(b, uint32(len(b)-4))
			s.buf = b
			_, err = c.Write(b)
			return err
		}, func() { c.Close() }, nil
	})
}

// openRedisNoReply opens one Redis connection per point, turns replies off
// (CLIENT REPLY OFF) and sends one GEOADD on each: Redis's cost of a lone
// command with nothing written back, like an accepted sample.
func openRedisNoReply(ctx context.Context, addr string, start []point, seed uint64) (*floorFleet, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	n := 0
	return openFloor("redis connection", start, seed, func(s *floorSender) (func(time.Time) error, func(), error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		if _, err := c.Write(respCommand(nil, "CLIENT", "REPLY", "OFF")); err != nil {
			c.Close()
			return nil, nil, err
		}
		member := "floor-" + strconv.Itoa(n)
		n++
		return func(time.Time) error {
			s.step()
			s.buf = respCommand(s.buf[:0], "GEOADD", floorKey,
				strconv.FormatFloat(s.pos.Lng, 'f', 7, 64), strconv.FormatFloat(s.pos.Lat, 'f', 7, 64), member)
			_, err := c.Write(s.buf)
			return err
		}, func() { c.Close() }, nil
	})
}

// floorKey is the Redis key the no-reply floor writes.
const floorKey = "floor"

// respCommand appends args as a RESP array of bulk strings to b.
func respCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// floorLoad is one floor server and how to connect its senders.
type floorLoad struct {
	srv  *server
	what string
	open func(ctx context.Context) (*floorFleet, error)
}

// floorLoads are the floors the samples are measured against: the floor
// servers, and Redis (rd) with replies off; each connects a sender per
// driver app at the apps' starting points.
func (b *bench) floorLoads(rd *server, start []point) []floorLoad {
	seed := b.cfg.Seed + 300
	var out []floorLoad
	for i, kind := range FloorKinds {
		srv := b.floors[i]
		fl := floorLoad{srv: srv}
		switch kind {
		case FloorGRPC:
			fl.what = "gRPC server, hexride's transport settings, Connect handler only receives: own connection + stream per app"
			fl.open = func(ctx context.Context) (*floorFleet, error) { return openFloorGRPC(ctx, srv.addr, start, seed) }
		case FloorTCP:
			fl.what = "Go TCP server reading length-prefixed samples: own connection per app"
			fl.open = func(ctx context.Context) (*floorFleet, error) { return openFloorTCP(ctx, srv.addr, start, seed) }
		}
		out = append(out, fl)
	}
	return append(out, floorLoad{srv: rd,
		what: "Redis, CLIENT REPLY OFF, GEOADD one per message: own connection per app",
		open: func(ctx context.Context) (*floorFleet, error) { return openRedisNoReply(ctx, rd.addr, start, seed) }})
}

// run measures one repetition: the senders connect, tick for one interval
// to spread their phases, are measured, and disconnect, so no floor loads
// the machine (or Redis, with idle clients) while another cell is measured.
func (fl floorLoad) run(ctx context.Context, b *bench, every time.Duration) (rep, error) {
	f, err := fl.open(ctx)
	if err != nil {
		return rep{}, err
	}
	defer f.close()
	f.drive(ctx, every)
	f.active.Store(true)
	if err := sleep(ctx, every); err != nil {
		return rep{}, err
	}
	r, err := measure(ctx, fl.srv.pid(), f.counter, b.cfg.Warmup, b.cfg.Window)
	f.active.Store(false)
	if err == nil {
		err = alive(fl.srv)
	}
	if err == nil && r.errors > 0 {
		err = f.counter.firstErr()
	}
	return r, err
}

// idleFloors opens idle connections to each floor server (a gRPC stream
// that sent one sample; a TCP connection that sent one frame) at each
// count and returns RSS per connection, [floor][count].
func (b *bench) idleFloors(ctx context.Context, counts []int, pts []point) ([][]MemCell, error) {
	var out [][]MemCell
	for i, kind := range FloorKinds {
		srv := b.floors[i]
		base, err := ProcessRSS(srv.pid())
		if err != nil {
			return nil, err
		}
		var fleets []*floorFleet
		closeAll := func() {
			for _, f := range fleets {
				f.close()
			}
		}
		cells := make([]MemCell, len(counts))
		opened := 0
		for j, n := range counts {
			b.progress("idle streams: opening %d more connections to the %s floor (%d in all)", n-opened, kind, n)
			var f *floorFleet
			what := ""
			switch kind {
			case FloorGRPC:
				f, err = openFloorGRPC(ctx, srv.addr, pts[opened:n], b.cfg.Seed+400)
				what = "gRPC server, hexride's transport settings: connection + Connect stream that sent one sample"
			case FloorTCP:
				f, err = openFloorTCP(ctx, srv.addr, pts[opened:n], b.cfg.Seed+400)
				what = "Go TCP server: connection that sent one sample, one goroutine and a 4 KiB buffer"
			}
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("idle streams, %s floor: %w", kind, err)
			}
			fleets, opened = append(fleets, f), n
			if err := sleep(ctx, b.cfg.Settle); err != nil {
				closeAll()
				return nil, err
			}
			rss, err := ProcessRSS(srv.pid())
			if err != nil {
				closeAll()
				return nil, err
			}
			cells[j] = MemCell{System: Floor, What: what, BytesPer: float64(rss-base) / float64(n), RSS: rss, Baseline: base, Count: n}
		}
		closeAll()
		out = append(out, cells)
	}
	return out, nil
}
