package oauth

import (
	"context"
	"encoding/base64"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/x/errorsx"

	"github.com/latchkey/latchkey/server/oauth/credential"
)

// prefixedHMACStrategy is fosite's HMAC token strategy with latchkey's
// "lk_at_" prefix on access tokens, so scanners recognise a leaked token.
// A token without the prefix is not one of ours and never validates.
type prefixedHMACStrategy struct {
	*oauth2.HMACSHAStrategyUnPrefixed
}

func (h *prefixedHMACStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	body, ok := strings.CutPrefix(token, credential.AccessTokenPrefix)
	if !ok || !canonicalHMACToken(body) {
		return ""
	}
	return h.HMACSHAStrategyUnPrefixed.AccessTokenSignature(ctx, body)
}

// canonicalHMACToken reports whether body is key.signature, each in the
// one base64url spelling latchkey issues. fosite decodes leniently, so a
// token whose last character differs only in the bits base64 leaves unused
// would otherwise pass for the token it was made from: one token, several
// strings, which a client or cache keying on the string would not expect.
func canonicalHMACToken(body string) bool {
	key, sig, ok := strings.Cut(body, ".")
	if !ok {
		return false
	}
	enc := base64.RawURLEncoding.Strict()
	_, errKey := enc.DecodeString(key)
	_, errSig := enc.DecodeString(sig)
	return errKey == nil && errSig == nil
}

func (h *prefixedHMACStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	token, sig, err := h.HMACSHAStrategyUnPrefixed.GenerateAccessToken(ctx, r)
	if err != nil {
		return "", "", err
	}
	return credential.AccessTokenPrefix + token, sig, nil
}

// ValidateAccessToken checks only the token's HMAC: fosite's own check
// would also compare its expiry with time.Now, and whether a token is
// active is decided once, on the Provider's clock (active, in lifetime.go).
func (h *prefixedHMACStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	body, ok := strings.CutPrefix(token, credential.AccessTokenPrefix)
	if !ok || !canonicalHMACToken(body) {
		return errorsx.WithStack(fosite.ErrInvalidTokenFormat)
	}
	return h.Enigma.Validate(ctx, body)
}
