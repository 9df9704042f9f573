package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/latchkey/latchkey/dpop"
	"github.com/latchkey/latchkey/storage"
)

// DPoPAlgorithms are the proof signature algorithms the token endpoint
// accepts (RFC 9449 §5.1 dpop_signing_alg_values_supported): the ones
// latchkey takes on client assertions too, never none or HS*.
var DPoPAlgorithms = storage.ClientAssertionAlgorithms

// The window a proof's iat must fall in. A client makes a fresh proof for
// every request, so a proof minutes old is a replay or a broken clock;
// dpop's defaults leave room for the second and not much more.
const (
	dpopMaxAge = dpop.DefaultMaxAge
	dpopLeeway = dpop.DefaultLeeway
)

// sessionJKT is the fosite.DefaultSession Extra entry holding the RFC 7638
// thumbprint a DPoP-bound token is bound to (RFC 9449 §6); absent for a
// bearer token.
const sessionJKT = "jkt"

// InvalidDPoPProof is the RFC 9449 §5 error for a token request whose
// proof fails a check; hint says which.
func InvalidDPoPProof(hint string) error {
	return &fosite.RFC6749Error{
		ErrorField:       dpop.CodeInvalidProof,
		DescriptionField: "The DPoP proof is invalid.",
		HintField:        hint,
		CodeField:        http.StatusBadRequest,
	}
}

// invalidTarget is the RFC 8707 §2 error for a resource the client may not
// have a token for, or that is not an absolute URI.
func invalidTarget(format string, args ...any) error {
	return &fosite.RFC6749Error{
		ErrorField:       "invalid_target",
		DescriptionField: "The requested resource is invalid, unknown, or malformed.",
		HintField:        fmt.Sprintf(format, args...),
		CodeField:        http.StatusBadRequest,
	}
}

// binding is what a token request's DPoP proof binds its token to. It
// lives for the whole request, across Token's retry, so that the proof is
// verified and its jti recorded once: a retry recording it again would
// take the request for its own replay.
type binding struct {
	checked bool
	// jkt is the proof key's thumbprint; "" for a bearer request.
	jkt string
	// jtiKey is the proof's jti as recorded, and until how long.
	jtiKey   string
	until    time.Time
	recorded bool
	// assertion is the client assertion's jti, if the client sent one,
	// recorded after the proof's.
	assertion spentJTI
}

// checkProof verifies the request's DPoP proof, if it has one, for client
// c (RFC 9449 §4.3, §5). It runs once the client has authenticated, so a
// stranger never costs a signature verification. An integration with
// require_dpop gets invalid_dpop_proof without a proof: the request is a
// well-formed OAuth request, what it lacks is the sender constraint, and
// that error is the one a DPoP-aware client knows to fix by sending a
// proof.
func (p *Provider) checkProof(r *http.Request, c *storage.Client, b *binding) error {
	if b.checked {
		return nil
	}
	if len(r.Header.Values("DPoP")) == 0 {
		if c.Integration.RequireDPoP {
			return InvalidDPoPProof("This integration requires DPoP (require_dpop): send a DPoP proof with the token request (RFC 9449).")
		}
		b.checked = true
		return nil
	}
	raw, err := dpop.FromHeader(r.Header)
	if err != nil {
		return proofError(err)
	}
	now := p.now()
	proof, err := dpop.Verify(raw, dpop.VerifyOptions{
		Method: http.MethodPost, URL: p.opts.Issuer + dpop.RequestPath(r), Now: now,
		MaxAge: dpopMaxAge, Leeway: dpopLeeway, Algs: DPoPAlgorithms,
	})
	if err != nil {
		return proofError(err)
	}
	b.checked = true
	b.jkt = proof.Thumbprint
	b.jtiKey = "d:" + proof.Thumbprint + ":" + proof.JTI
	// A proof is accepted until iat+MaxAge, by a replica whose clock may
	// be behind this one's by up to the leeway; until then its jti must be
	// remembered.
	b.until = proof.IssuedAt.Add(dpopMaxAge + dpopLeeway)
	return nil
}

// recordProof records the proof's jti, once per request, refusing a proof
// seen before on any replica (RFC 9449 §11.1). It runs after the issuance
// cap admitted the request, so a refused request costs no write.
func (p *Provider) recordProof(ctx context.Context, b *binding) error {
	if b.jkt == "" || b.recorded {
		return nil
	}
	err := p.store.UseJTI(ctx, b.jtiKey, b.until)
	if errors.Is(err, storage.ErrReplay) {
		return InvalidDPoPProof("The proof's jti was used before: make a new proof for every request.")
	}
	if err != nil {
		return err
	}
	b.recorded = true
	return nil
}

// proofError turns a failed check into invalid_dpop_proof, naming the
// check; anything else is the server's own failure.
func proofError(err error) error {
	var de *dpop.Error
	if errors.As(err, &de) {
		return InvalidDPoPProof(de.Description + ".")
	}
	return err
}

// maxResourceLength bounds a resource value, as an allowed audience value
// is bounded: a longer one cannot be allowed.
const maxResourceLength = 256

// requestResources adds the request's resource indicators (RFC 8707 §2)
// to its requested audience. Each must be an absolute URI without a
// fragment, and within the integration's audience; else invalid_target.
// resource and audience ask for the same thing, the token's aud, so the
// token is granted every value of both.
func requestResources(req fosite.AccessRequester, c *storage.Client) error {
	resources := req.GetRequestForm()["resource"]
	if len(resources) == 0 {
		return nil
	}
	aud := append(fosite.Arguments{}, req.GetRequestedAudience()...)
	for _, v := range resources {
		if !validResource(v) {
			return invalidTarget("Each resource must be an absolute URI without a fragment, of at most %d printable ASCII characters (RFC 8707 §2).", maxResourceLength)
		}
		if !slices.Contains(c.Integration.Audience, v) {
			return invalidTarget("The resource %q is not in this integration's audience.", v)
		}
		if !aud.Has(v) {
			aud = append(aud, v)
		}
	}
	req.SetRequestedAudience(aud)
	return nil
}

func validResource(v string) bool {
	if len(v) > maxResourceLength {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f || v[i] == '#' {
			return false
		}
	}
	u, err := url.Parse(v)
	return err == nil && u.IsAbs()
}
