package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// apiError is an error the console itself raises, with its HTTP status.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func errBadRequest(msg string) error { return &apiError{code: http.StatusBadRequest, msg: msg} }
func errNotFound(msg string) error   { return &apiError{code: http.StatusNotFound, msg: msg} }
func errInternal(msg string) error   { return &apiError{code: http.StatusInternalServerError, msg: msg} }
func errUnauthorized(msg string) error {
	return &apiError{code: http.StatusUnauthorized, msg: msg}
}
func errForbidden(msg string) error { return &apiError{code: http.StatusForbidden, msg: msg} }

// httpStatus maps an error to the HTTP status the API answers with: the
// console's own errors carry theirs; errors from the services carry a gRPC
// status (wrapped or not); context errors are timeouts or gone clients.
func httpStatus(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	if errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		return http.StatusInternalServerError
	}
	switch st.Code() {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted, codes.FailedPrecondition:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return http.StatusServiceUnavailable
	default: // Unknown, Internal, DataLoss
		return http.StatusInternalServerError
	}
}

// errorMessage is the text an error shows the client: the gRPC message
// without the "rpc error: code = …" prefix.
func errorMessage(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.msg
	}
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

type errorBody struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

func writeError(w http.ResponseWriter, err error) {
	code := httpStatus(err)
	writeJSON(w, code, errorBody{Error: errorMessage(err), Code: code})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func errUnavailable(msg string) error {
	return &apiError{code: http.StatusServiceUnavailable, msg: msg}
}
