package oauth

import (
	"context"
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/latchkey/latchkey/storage"
)

// The RFC 6749 §5.2 errors the server raises itself, with a hint that
// becomes part of the error description.

func InvalidRequest(format string, args ...any) error {
	return fosite.ErrInvalidRequest.WithHintf(format, args...)
}

func InvalidClient(format string, args ...any) error {
	return fosite.ErrInvalidClient.WithHintf(format, args...)
}

func InvalidScope(format string, args ...any) error {
	return fosite.ErrInvalidScope.WithHintf(format, args...)
}

func UnsupportedGrantType(format string, args ...any) error {
	return fosite.ErrUnsupportedGrantType.WithHintf(format, args...)
}

// ErrorResponse is what an OAuth endpoint answers for an error.
type ErrorResponse struct {
	Status      int
	Code        string
	Description string
	// Cause is set when the failure is the server's, not the client's: it
	// is for the log, never for the client.
	Cause error
}

// Describe turns err into the RFC 6749 §5.2 answer. A database failure,
// a timeout or a client that went away is 503 temporarily_unavailable.
func Describe(err error) ErrorResponse {
	var cause error
	switch {
	case errors.Is(err, context.Canceled):
		err = fosite.ErrTemporarilyUnavailable // the client went away
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		cause, err = innermost(err), fosite.ErrTemporarilyUnavailable
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= http.StatusInternalServerError && cause == nil && !errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		cause = errors.New(rfc.WithExposeDebug(true).GetDescription())
	}
	return ErrorResponse{Status: rfc.CodeField, Code: rfc.ErrorField, Description: rfc.GetDescription(), Cause: cause}
}

// innermost digs the storage error out of fosite's wrapping, whose own
// message is only an error code. Storage errors join their context and
// ErrUnavailable with two %w verbs, so single unwrapping stops at them.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
