package grpcserver

import (
	"context"
	"log/slog"
	"reflect"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Requests that are not the message they claim to be.
//
// grpc-go decodes a request message inside its ServerStream.RecvMsg, which a
// unary handler reaches through its dec func before any interceptor runs.
// When decoding fails, RecvMsg writes codes.Internal ("grpc: failed to
// unmarshal the received message: …") to the client itself and only then
// returns the error, so mapping the returned error afterwards — in a wrapped
// dec, a wrapped stream or an interceptor — is too late: the client already
// has Internal.
//
// So the two halves work together. The server's codec (decodeCodec, forced
// with grpc.ForceServerCodecV2) is the proto codec, except that when decoding
// into a message the registrar armed fails, it records the failure and
// reports success, so grpc writes nothing. The registrar arms the message
// around each dec and RecvMsg of the services registered through it, then
// returns InvalidArgument naming the expected message type, which the handler
// returns and grpc sends. Receives nobody armed fail as grpc-go's own.
// Decompression failures and oversized messages happen before the codec and
// keep grpc-go's status.

// decodeCodec is the proto codec, lenient for armed receives.
type decodeCodec struct {
	encoding.CodecV2
	armed sync.Map // message being received → *decodeFailure
}

type decodeFailure struct {
	mu  sync.Mutex
	err error
}

func newDecodeCodec() *decodeCodec {
	return &decodeCodec{CodecV2: encoding.GetCodecV2(protoenc.Name)}
}

// Unmarshal decodes data into v; when that fails and v is armed, it records
// the error for receive and reports success.
func (c *decodeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err != nil && armable(v) {
		if f, ok := c.armed.Load(v); ok {
			f := f.(*decodeFailure)
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
			return nil
		}
	}
	return err
}

// armable reports whether m can be armed: a proto message behind a pointer
// (what generated code passes), usable as a map key.
func armable(m any) bool {
	_, ok := m.(proto.Message)
	return ok && reflect.TypeOf(m).Kind() == reflect.Pointer
}

// receive runs recv (a dec func or a RecvMsg) into m with m armed and turns
// a decode failure into InvalidArgument; other results pass unchanged.
func (c *decodeCodec) receive(logger *slog.Logger, method string, m any, recv func(any) error) error {
	if !armable(m) {
		return recv(m)
	}
	f := new(decodeFailure)
	if _, busy := c.armed.LoadOrStore(m, f); busy {
		return recv(m) // someone already receives into m; leave it to them
	}
	err := recv(m)
	c.armed.Delete(m)
	f.mu.Lock()
	decodeErr := f.err
	f.mu.Unlock()
	if decodeErr == nil {
		return err
	}
	name := m.(proto.Message).ProtoReflect().Descriptor().FullName()
	logger.Debug("undecodable request", "method", method, "type", string(name), "error", decodeErr)
	return status.Errorf(codes.InvalidArgument, "request is not a valid %s message", name)
}

// registrar registers services on the grpc.Server with every method's
// request decoding going through codec.receive. It also provides
// GetServiceInfo, so reflection can be registered through it.
type registrar struct {
	srv    *grpc.Server
	codec  *decodeCodec
	logger *slog.Logger
}

// RegisterService registers a copy of desc whose handlers receive through
// codec.receive; desc itself is left alone.
func (r *registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, md := range desc.Methods {
		handler, method := md.Handler, "/"+desc.ServiceName+"/"+md.MethodName
		md.Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			return handler(srv, ctx, func(m any) error { return r.codec.receive(r.logger, method, m, dec) }, interceptor)
		}
		d.Methods[i] = md
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		handler, method := sd.Handler, "/"+desc.ServiceName+"/"+sd.StreamName
		sd.Handler = func(srv any, stream grpc.ServerStream) error {
			return handler(srv, &decodeStream{ServerStream: stream, r: r, method: method})
		}
		d.Streams[i] = sd
	}
	r.srv.RegisterService(&d, impl)
}

// GetServiceInfo returns the services registered on the server.
func (r *registrar) GetServiceInfo() map[string]grpc.ServiceInfo { return r.srv.GetServiceInfo() }

// decodeStream is a handler's stream whose RecvMsg receives through
// codec.receive.
type decodeStream struct {
	grpc.ServerStream
	r      *registrar
	method string
}

func (s *decodeStream) RecvMsg(m any) error {
	return s.r.codec.receive(s.r.logger, s.method, m, s.ServerStream.RecvMsg)
}
