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
	"strconv"
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
	// goroutine and a 4 KiB buffer per connection: the Go runtime's share.
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
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer lis.Close()
	switch kind {
	case FloorGRPC:
		gs := grpc.NewServer(grpcserver.TransportOptions(grpcserver.DefaultConfig(addr))...)
		driverv1.RegisterDriverServiceServer(gs, receiveOnly{})
		fmt.Fprintln(out, floorServing+lis.Addr().String())
		go func() { <-ctx.Done(); gs.Stop() }()
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	case FloorTCP:
		fmt.Fprintln(out, floorServing+lis.Addr().String())
		go func() { <-ctx.Done(); lis.Close() }()
		var wg sync.WaitGroup
		defer wg.Wait()
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
				readFrames(c)
			}()
		}
	default:
		return fmt.Errorf("bench: unknown floor server %q (kinds: %s, %s)", kind, FloorGRPC, FloorTCP)
	}
}

// receiveOnly is the gRPC floor's driver service: Connect receives until
// the stream ends and does nothing with what it gets.
type receiveOnly struct {
	driverv1.UnimplementedDriverServiceServer
}

func (receiveOnly) Connect(s grpc.BidiStreamingServer[driverv1.ConnectRequest, driverv1.ConnectResponse]) error {
	for {
		if _, err := s.Recv(); err != nil {
			return nil
		}
	}
}

// maxFrame bounds a floor frame: samples are ~60 bytes.
const maxFrame = 4 << 10

// readFrames reads 4-byte big-endian length-prefixed frames until an error.
func readFrames(c net.Conn) {
	r := bufio.NewReaderSize(c, 4<<10)
	var hdr [4]byte
	buf := make([]byte, maxFrame)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			return
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return
		}
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

// openFloorGRPC opens one connection and Connect stream per point and
// sends one sample on each.
func openFloorGRPC(ctx context.Context, addr string, start []point, seed uint64) (*floorFleet, error) {
	f := &floorFleet{n: len(start), counter: &counters{}}
	streams := make([]grpc.BidiStreamingClient[driverv1.ConnectRequest, driverv1.ConnectResponse], len(start))
	seqs := make([]uint64, len(start))
	pos := append([]point(nil), start...)
	rngs := make([]*rand.Rand, len(start))
	for i := range start {
		conn, err := grpc.NewClient(addr, appDialOptions()...)
		if err != nil {
			f.close()
			return nil, err
		}
		sctx, cancel := context.WithCancel(ctx)
		f.closers = append(f.closers, func() { cancel(); conn.Close() })
		if streams[i], err = driverv1.NewDriverServiceClient(conn).Connect(sctx); err != nil {
			f.close()
			return nil, fmt.Errorf("floor stream %d: %w", i, err)
		}
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	f.send = func(i int, now time.Time) error {
		seqs[i]++
		pos[i] = move(pos[i], 3+5*rngs[i].Float64(), rngs[i])
		return streams[i].Send(floorSample(seqs[i], pos[i], rngs[i], now))
	}
	for i := range start {
		if err := f.send(i, time.Now()); err != nil {
			f.close()
			return nil, fmt.Errorf("floor stream %d: %w", i, err)
		}
	}
	return f, nil
}

// openFloorTCP opens one connection per point and sends one frame holding
// a marshalled sample on each.
func openFloorTCP(ctx context.Context, addr string, start []point, seed uint64) (*floorFleet, error) {
	f := &floorFleet{n: len(start), counter: &counters{}}
	conns := make([]net.Conn, len(start))
	seqs := make([]uint64, len(start))
	pos := append([]point(nil), start...)
	rngs := make([]*rand.Rand, len(start))
	bufs := make([][]byte, len(start))
	d := net.Dialer{Timeout: 5 * time.Second}
	for i := range start {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("floor connection %d: %w", i, err)
		}
		conns[i] = c
		f.closers = append(f.closers, func() { c.Close() })
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	f.send = func(i int, now time.Time) error {
		seqs[i]++
		pos[i] = move(pos[i], 3+5*rngs[i].Float64(), rngs[i])
		b, err := proto.MarshalOptions{}.MarshalAppend(append(bufs[i][:0], 0, 0, 0, 0), floorSample(seqs[i], pos[i], rngs[i], now))
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		bufs[i] = b
		_, err = conns[i].Write(b)
		return err
	}
	for i := range start {
		if err := f.send(i, time.Now()); err != nil {
			f.close()
			return nil, fmt.Errorf("floor connection %d: %w", i, err)
		}
	}
	return f, nil
}

// openRedisNoReply opens one Redis connection per point, turns replies off
// (CLIENT REPLY OFF) and sends one GEOADD on each: Redis's cost of a lone
// command with nothing written back, like an accepted sample.
func openRedisNoReply(ctx context.Context, addr string, start []point, seed uint64) (*floorFleet, error) {
	f := &floorFleet{n: len(start), counter: &counters{}}
	conns := make([]net.Conn, len(start))
	pos := append([]point(nil), start...)
	rngs := make([]*rand.Rand, len(start))
	bufs := make([][]byte, len(start))
	d := net.Dialer{Timeout: 5 * time.Second}
	for i := range start {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("redis connection %d: %w", i, err)
		}
		conns[i] = c
		f.closers = append(f.closers, func() { c.Close() })
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)))
		if _, err := c.Write(respCommand(nil, "CLIENT", "REPLY", "OFF")); err != nil {
			f.close()
			return nil, fmt.Errorf("redis connection %d: %w", i, err)
		}
	}
	f.send = func(i int, _ time.Time) error {
		pos[i] = move(pos[i], 3+5*rngs[i].Float64(), rngs[i])
		bufs[i] = respCommand(bufs[i][:0], "GEOADD", floorKey,
			strconv.FormatFloat(pos[i].Lng, 'f', 7, 64), strconv.FormatFloat(pos[i].Lat, 'f', 7, 64), "floor-"+strconv.Itoa(i))
		_, err := conns[i].Write(bufs[i])
		return err
	}
	for i := range start {
		if err := f.send(i, time.Now()); err != nil {
			f.close()
			return nil, fmt.Errorf("redis connection %d: %w", i, err)
		}
	}
	return f, nil
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

// floorLoad is one floor's senders and the server they load.
type floorLoad struct {
	fleet *floorFleet
	srv   *server
	what  string
}

func (fl floorLoad) close() { fl.fleet.close() }

// openFloorFleets connects a sender per driver app to each floor server
// and to Redis with replies off, each at the apps' starting points.
func (b *bench) openFloorFleets(ctx context.Context, rd *server, start []point) ([]floorLoad, error) {
	var out []floorLoad
	fail := func(err error) ([]floorLoad, error) {
		for _, fl := range out {
			fl.close()
		}
		return nil, err
	}
	for i, kind := range FloorKinds {
		srv := b.floors[i]
		b.progress("samples: connecting %d senders to the %s floor", len(start), kind)
		var f *floorFleet
		var err error
		what := ""
		switch kind {
		case FloorGRPC:
			f, err = openFloorGRPC(ctx, srv.addr, start, b.cfg.Seed+300)
			what = "gRPC server, hexride's transport settings, Connect handler only receives: own connection + stream per app"
		case FloorTCP:
			f, err = openFloorTCP(ctx, srv.addr, start, b.cfg.Seed+300)
			what = "Go TCP server reading length-prefixed samples: own connection per app"
		}
		if err != nil {
			return fail(fmt.Errorf("%s floor: %w", kind, err))
		}
		out = append(out, floorLoad{fleet: f, srv: srv, what: what})
	}
	f, err := openRedisNoReply(ctx, rd.addr, start, b.cfg.Seed+300)
	if err != nil {
		return fail(err)
	}
	return append(out, floorLoad{fleet: f, srv: rd,
		what: "Redis, CLIENT REPLY OFF, GEOADD one per message: own connection per app"}), nil
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
