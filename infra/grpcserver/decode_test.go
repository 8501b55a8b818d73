package grpcserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
)

// rawCodec sends and receives message bytes as they are, so a test can put
// anything on the wire. Named "proto", the server sees an ordinary call.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// stubMatching answers CancelDispatch (panicking for panicTrip) and echoes
// IngestLocations batches, counting the calls that reach it.
type stubMatching struct {
	matchingv1.UnimplementedMatchingServiceServer
	calls atomic.Int64
}

const panicTrip = "00000000-0000-4000-8000-00000000dead"

func (s *stubMatching) CancelDispatch(_ context.Context, req *matchingv1.CancelDispatchRequest) (*matchingv1.CancelDispatchResponse, error) {
	s.calls.Add(1)
	if req.GetTripId() == panicTrip {
		panic("boom")
	}
	return &matchingv1.CancelDispatchResponse{Cancelled: true}, nil
}

func (s *stubMatching) IngestLocations(stream grpc.BidiStreamingServer[matchingv1.IngestLocationsRequest, matchingv1.IngestLocationsResponse]) error {
	s.calls.Add(1)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&matchingv1.IngestLocationsResponse{BatchSeq: req.GetBatchSeq()}); err != nil {
			return err
		}
	}
}

// stubTrip counts GetTrip calls.
type stubTrip struct {
	tripv1.UnimplementedTripServiceServer
	calls atomic.Int64
}

func (s *stubTrip) GetTrip(context.Context, *tripv1.GetTripRequest) (*tripv1.GetTripResponse, error) {
	s.calls.Add(1)
	return &tripv1.GetTripResponse{}, nil
}

// startServer serves a stub MatchingService through Registrar on a real
// socket, with one unary and one stream interceptor counting the calls they
// see, and returns a client connection to it. register, if set, registers
// more services before the server starts.
func startServer(t *testing.T, register ...func(*Server)) (stub *stubMatching, intercepted *atomic.Int64, cc *grpc.ClientConn) {
	t.Helper()
	intercepted = new(atomic.Int64)
	s, err := New(DefaultConfig("127.0.0.1:0"), slog.New(slog.DiscardHandler), Options{
		UnaryInterceptors: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			intercepted.Add(1)
			return h(ctx, req)
		}},
		StreamInterceptors: []grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			intercepted.Add(1)
			return h(srv, ss)
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	stub = &stubMatching{}
	matchingv1.RegisterMatchingServiceServer(s.Registrar(), stub)
	for _, r := range register {
		r(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cc, err = grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return stub, intercepted, cc
}

// invalidUTF8 is a message whose string field `field` holds 0xff 0xfe.
func invalidUTF8(field protowire.Number) []byte {
	b := protowire.AppendTag(nil, field, protowire.BytesType)
	return protowire.AppendBytes(b, []byte{0xff, 0xfe})
}

// garbage is not protobuf at all: wire type 7 does not exist.
var garbage = []byte{0x0f, 0xff, 0xfe, 'j', 'u', 'n', 'k'}

func wantUndecodable(t *testing.T, what string, err error, msgType string) {
	t.Helper()
	st := status.Convert(err)
	want := "request is not a valid " + msgType + " message"
	if st.Code() != codes.InvalidArgument || st.Message() != want {
		t.Errorf("%s: %v, want InvalidArgument %q", what, err, want)
	}
	if m := st.Message(); strings.Contains(m, "grpc:") || strings.Contains(m, "unmarshal") {
		t.Errorf("%s: message leaks internals: %q", what, m)
	}
}

// TestUndecodableRequestIsInvalidArgument sends bytes that are not the
// method's request message, unary and on a bidi stream, and to the health
// service the server registers itself: each is refused with
// InvalidArgument naming the message type, and no handler runs.
func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	// A service registered around Registrar keeps grpc-go's Internal: the
	// codec is lenient only for receives the registrar armed, so no handler
	// ever runs on a half-decoded message.
	direct := &stubTrip{}
	stub, _, cc := startServer(t, func(s *Server) { tripv1.RegisterTripServiceServer(s.grpc, direct) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw := grpc.ForceCodecV2(rawCodec{})

	unary := func(method string, req []byte) error {
		var resp []byte
		return cc.Invoke(ctx, method, req, &resp, raw)
	}
	const cancelDispatch = "/hexride.matching.v1.MatchingService/CancelDispatch"
	const cancelReq = "hexride.matching.v1.CancelDispatchRequest"
	wantUndecodable(t, "unary garbage", unary(cancelDispatch, garbage), cancelReq)
	wantUndecodable(t, "unary invalid UTF-8", unary(cancelDispatch, invalidUTF8(1)), cancelReq)
	wantUndecodable(t, "health check garbage", unary("/grpc.health.v1.Health/Check", garbage), "grpc.health.v1.HealthCheckRequest")
	if err := unary("/hexride.trip.v1.TripService/GetTrip", garbage); status.Code(err) != codes.Internal || direct.calls.Load() != 0 {
		t.Errorf("service registered directly: %v after %d handler calls, want grpc-go's Internal and none", err, direct.calls.Load())
	}

	bidi := func(method string, desc *grpc.StreamDesc, req []byte) error {
		stream, err := cc.NewStream(ctx, desc, method, raw)
		if err != nil {
			return err
		}
		if err := stream.SendMsg(req); err != nil {
			return err
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		var resp []byte
		return stream.RecvMsg(&resp)
	}
	const ingest = "/hexride.matching.v1.MatchingService/IngestLocations"
	const ingestReq = "hexride.matching.v1.IngestLocationsRequest"
	ingestDesc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	// departures[0].driver_id with invalid UTF-8, one message deep.
	nested := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), invalidUTF8(1))
	wantUndecodable(t, "stream garbage", bidi(ingest, ingestDesc, garbage), ingestReq)
	wantUndecodable(t, "stream invalid UTF-8", bidi(ingest, ingestDesc, nested), ingestReq)
	wantUndecodable(t, "health watch garbage", bidi("/grpc.health.v1.Health/Watch", &grpc.StreamDesc{ServerStreams: true}, garbage), "grpc.health.v1.HealthCheckRequest")

	// The stream handler ran twice (it reads the stream), the unary one never.
	if n := stub.calls.Load(); n != 2 {
		t.Errorf("handlers ran %d times, want 2 (the two IngestLocations streams)", n)
	}
}

// TestValidRequestsStillServed: after the registrar's wrapping, valid calls
// succeed through the interceptors; validation, recovery and reflection
// behave as before.
func TestValidRequestsStillServed(t *testing.T) {
	stub, intercepted, cc := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := matchingv1.NewMatchingServiceClient(cc)
	req := &matchingv1.CancelDispatchRequest{TripId: "6f1c2a7e-3b5d-4c8e-9f0a-1b2c3d4e5f60", Pickup: &commonv1.LatLng{Lat: 52.52, Lng: 13.40}}

	if resp, err := client.CancelDispatch(ctx, req); err != nil || !resp.GetCancelled() {
		t.Fatalf("valid unary call: %v, %v", resp, err)
	}
	// The same bytes through the raw codec are decoded as well.
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := cc.Invoke(ctx, "/hexride.matching.v1.MatchingService/CancelDispatch", b, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatalf("valid raw unary call: %v", err)
	}
	stream, err := client.IngestLocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if err := stream.Send(&matchingv1.IngestLocationsRequest{BatchSeq: seq}); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); err != nil || resp.GetBatchSeq() != seq {
			t.Fatalf("batch %d: %v, %v", seq, resp, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v, want EOF", err)
	}
	if got, want := intercepted.Load(), int64(3); got != want {
		t.Errorf("interceptors saw %d calls, want %d", got, want)
	}

	// Validation still refuses a well-formed but invalid request.
	bad := proto.Clone(req).(*matchingv1.CancelDispatchRequest)
	bad.TripId = "not-a-uuid"
	before := stub.calls.Load()
	if _, err := client.CancelDispatch(ctx, bad); status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "trip_id") {
		t.Errorf("invalid trip id: %v, want the validator's InvalidArgument", err)
	}
	if stub.calls.Load() != before {
		t.Error("handler ran for a request that failed validation")
	}
	// Recovery still turns a panic into Internal.
	boom := proto.Clone(req).(*matchingv1.CancelDispatchRequest)
	boom.TripId = panicTrip
	if _, err := client.CancelDispatch(ctx, boom); status.Code(err) != codes.Internal || status.Convert(err).Message() != "internal error" {
		t.Errorf("panicking handler: %v, want Internal \"internal error\"", err)
	}

	// Health and reflection are registered and answer.
	if r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, %v", r, err)
	}
	info, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := info.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := info.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range r.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "hexride.matching.v1.MatchingService") || !strings.Contains(got, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %q", got)
	}
	_ = info.CloseSend()
}
