package pluginapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the host side, besides the engine's sentinels in engine.go.
var (
	// ErrEngineNotFound: no engine binary of that name was discovered.
	ErrEngineNotFound = errors.New("engine not found")
	// ErrChecksumMismatch: the engine binary's SHA-256 is not the pinned
	// one; the binary was not run.
	ErrChecksumMismatch = errors.New("engine checksum mismatch")
	// ErrPluginExited: the engine's process ended while the host needed it
	// (it crashed, or it was killed after a timeout or cancellation).
	ErrPluginExited = errors.New("engine process exited")
	// ErrProtocol: the engine broke the protocol (message order, sizes, an
	// unknown entry type); what it sent is refused.
	ErrProtocol = errors.New("engine protocol violation")
)

// ErrorDomain is the google.rpc.ErrorInfo domain under which engines name
// their errors' reasons.
const ErrorDomain = "ptest-snap.engine.v1"

// errorReasons names each sentinel on the wire, with the gRPC status code
// it travels under.
var errorReasons = []struct {
	err    error
	reason string
	code   codes.Code
}{
	{ErrTargetNotFound, "TARGET_NOT_FOUND", codes.NotFound},
	{ErrInvalidTarget, "INVALID_TARGET", codes.FailedPrecondition},
	{ErrTargetExists, "TARGET_EXISTS", codes.AlreadyExists},
	{ErrUnsafePath, "UNSAFE_PATH", codes.InvalidArgument},
	{ErrUnavailable, "UNAVAILABLE", codes.Unavailable},
	{ErrPermissionDenied, "PERMISSION_DENIED", codes.PermissionDenied},
	{ErrUnsupported, "UNSUPPORTED", codes.Unimplemented},
}

// toStatus turns an engine's error into the gRPC status the plugin returns:
// the sentinel's code and an ErrorInfo naming it, the full message as the
// status message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isSentinelWrapped(err) {
		return err
	}
	code, reason := codes.Unknown, ""
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	for _, r := range errorReasons {
		if errors.Is(err, r.err) {
			code, reason = r.code, r.reason
			break
		}
	}
	st := status.New(code, err.Error())
	if reason != "" {
		if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); derr == nil {
			st = withInfo
		}
	}
	return st.Err()
}

func isSentinelWrapped(err error) bool {
	for _, r := range errorReasons {
		if errors.Is(err, r.err) {
			return true
		}
	}
	return false
}

// remoteError is an engine's error received over gRPC: its message as the
// engine wrote it, and the sentinel it named, so errors.Is works on the
// host.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// fromStatus maps a status received from an engine back to an error that
// matches the sentinel the engine named: its ErrorInfo reason when present,
// otherwise the status code for the codes that mean one thing only.
// transport reports whether the status came from gRPC itself rather than
// the engine (no reason; a code such as Unavailable).
func fromStatus(err error) (out error, fromEngine bool) {
	st, ok := status.FromError(err)
	if !ok {
		return err, false
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		for _, r := range errorReasons {
			if r.reason == info.GetReason() {
				return &remoteError{msg: st.Message(), sentinel: r.err}, true
			}
		}
	}
	switch st.Code() {
	case codes.NotFound:
		return &remoteError{msg: st.Message(), sentinel: ErrTargetNotFound}, true
	case codes.AlreadyExists:
		return &remoteError{msg: st.Message(), sentinel: ErrTargetExists}, true
	case codes.FailedPrecondition:
		return &remoteError{msg: st.Message(), sentinel: ErrInvalidTarget}, true
	case codes.Unimplemented:
		return &remoteError{msg: st.Message(), sentinel: ErrUnsupported}, true
	case codes.PermissionDenied:
		return &remoteError{msg: st.Message(), sentinel: ErrPermissionDenied}, true
	case codes.Unknown, codes.InvalidArgument, codes.Aborted, codes.OutOfRange,
		codes.ResourceExhausted, codes.DataLoss:
		return &remoteError{msg: st.Message()}, true
	}
	// Unavailable without a reason, Canceled, DeadlineExceeded, Internal:
	// most likely the transport (a dead or killed process), not the engine.
	return fmt.Errorf("%s: %s", st.Code(), st.Message()), false
}
