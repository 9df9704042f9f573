package storage

import (
	"errors"
	"fmt"
	"testing"
)

// TestInvalidError: a refusal is ErrInvalid to errors.Is, keeps the text
// "invalid: <reason>", and its reason is found through any wrapping.
func TestInvalidError(t *testing.T) {
	err := fmt.Errorf("create integration %q: %w", "x", invalidf("name %q is bad", "X"))
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	if got, want := err.Error(), `create integration "x": invalid: name "X" is bad`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var invalid *InvalidError
	if !errors.As(err, &invalid) {
		t.Fatalf("errors.As(%v, *InvalidError) = false", err)
	}
	if got, want := invalid.Reason, `name "X" is bad`; got != want {
		t.Errorf("Reason = %q, want %q", got, want)
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		t.Errorf("%v matches another sentinel", err)
	}
}
