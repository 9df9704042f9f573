package oauth

import (
	"time"

	"github.com/latchkey/latchkey/storage"
)

// The functions below are the only places where what a credential is
// worth is decided: by time, and by whether its integration is suspended.
// Each is given the Provider's clock reading; nothing in latchkey, fosite
// included, compares a key pair or token with time.Now.

// works decides whether key pair c may authenticate at now: it is in term
// and its integration is not disabled.
func works(c *storage.Client, now time.Time) bool {
	return inTerm(c, now) && !c.Integration.Disabled
}

// inTerm decides whether key pair c is still a credential at all at now:
// the current pair always, a replaced one until its grace deadline (a
// revoked pair's deadline is its revocation). A pair in term whose
// integration is disabled has its secret checked, so that only its owner
// learns of the suspension, and is then refused.
func inTerm(c *storage.Client, now time.Time) bool {
	return c.ExpiresAt == nil || c.ExpiresAt.After(now)
}

// Lifetime is how long the integration's tokens live: its own lifetime, or
// the server's default when it has none.
func (p *Provider) Lifetime(ig *storage.Integration) time.Duration {
	if s := ig.TokenLifetimeSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return p.opts.TokenLifetime
}

// expiry decides when a token issued to c at now expires: after its
// integration's Lifetime, and never after the pair's grace deadline, since
// a pair's tokens die with it.
func (p *Provider) expiry(c *storage.Client, now time.Time) time.Time {
	return earlier(now.Add(p.Lifetime(&c.Integration)), c.ExpiresAt)
}

// earlier is t, or deadline when that is set and comes first.
func earlier(t time.Time, deadline *time.Time) time.Time {
	if deadline != nil && deadline.Before(t) {
		return *deadline
	}
	return t
}

// active decides whether stored token t is active at now and, if so, until
// when: while it is unexpired and its pair works, so not while its
// integration is disabled (enabling it again brings the token back if it
// has not expired meanwhile). A token issued before its pair entered a
// grace period dies with the pair, so the reported expiry is the earlier
// of the two deadlines.
func active(t *storage.Token, now time.Time) (time.Time, bool) {
	if !t.ExpiresAt.After(now) || !works(t.Owner, now) {
		return time.Time{}, false
	}
	return earlier(t.ExpiresAt, t.Owner.ExpiresAt), true
}

// Status says until when stored token t works, the earlier of its own
// expiry and its pair's grace deadline (as introspection reports exp), and
// whether it is active now, on the Provider's clock.
func (p *Provider) Status(t *storage.Token) (time.Time, bool) {
	_, ok := active(t, p.now())
	return earlier(t.ExpiresAt, t.Owner.ExpiresAt), ok
}

// Revocable decides whether revoking stored token t ends something: it is
// unexpired and its pair in term, at the Provider's clock. That is whether
// it is active, less anything that only holds a token off for a while: a
// suspended integration's token would be active again on its resumption,
// so it is revocable.
func (p *Provider) Revocable(t *storage.Token) bool {
	now := p.now()
	return t.ExpiresAt.After(now) && inTerm(t.Owner, now)
}
