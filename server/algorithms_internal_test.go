package server

import (
	"slices"
	"testing"

	"github.com/latchkey/latchkey/storage"
)

// TestJWTAlgorithms keeps jwtAlgorithms, the algorithms a JWT access token
// may claim, the same as storage.SigningAlgorithms, the algorithms keys are
// made for. jwt.go is being moved; once it is, jwtAlgorithms should be
// built from storage.SigningAlgorithms and this test can go.
func TestJWTAlgorithms(t *testing.T) {
	got := make([]string, len(jwtAlgorithms))
	for i, a := range jwtAlgorithms {
		got[i] = string(a)
	}
	if !slices.Equal(got, storage.SigningAlgorithms) {
		t.Errorf("jwtAlgorithms = %q, storage.SigningAlgorithms = %q; want the same list", got, storage.SigningAlgorithms)
	}
}
