package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/storage"
)

// Bounds on fetching clients' key sets from their jwks_uri. The URL is
// chosen by an admin, but what answers there is not: a slow, huge or
// hostile answer must cost little, and a flood of assertions with made-up
// kids must not become a flood of fetches.
const (
	jwksFetchTimeout = 5 * time.Second
	// jwksMinAge and jwksMaxAge bound how long a fetched set is used, so
	// a Cache-Control of one second or one year is neither a fetch per
	// request nor a key that outlives its removal by a day.
	jwksMinAge     = time.Minute
	jwksMaxAge     = time.Hour
	jwksDefaultAge = 5 * time.Minute
	// jwksRefetchEvery is how often an unknown kid, or a failed fetch, may
	// cause another fetch of one URI.
	jwksRefetchEvery = 30 * time.Second
	// jwksStaleFor is how long past its expiry a set is used while its
	// URI fails to answer.
	jwksStaleFor = time.Hour
	// jwksMaxURIs bounds the cache; past it, the entry that expires first
	// is dropped.
	jwksMaxURIs = 1024
)

// jwksFetcher fetches and caches key sets by URI. Requests for one URI
// share one fetch in flight.
type jwksFetcher struct {
	client       *http.Client
	now          func() time.Time
	allowPrivate bool

	mu      sync.Mutex
	entries map[string]*jwksEntry
}

// jwksEntry is one URI's set: the last one fetched, until when it is
// fresh, and the last fetch's error, if it failed. done is closed when the
// fetch in flight ends.
type jwksEntry struct {
	set       *jose.JSONWebKeySet
	err       error
	expires   time.Time
	fetchedAt time.Time
	done      chan struct{}
}

func newJWKSFetcher(now func() time.Time, allowPrivate bool) *jwksFetcher {
	dialer := &net.Dialer{Timeout: jwksFetchTimeout, Control: dialControl(allowPrivate)}
	return &jwksFetcher{
		now:          now,
		allowPrivate: allowPrivate,
		entries:      map[string]*jwksEntry{},
		client: &http.Client{
			Timeout: jwksFetchTimeout,
			Transport: &http.Transport{
				// No proxy: the address check is on what is dialled,
				// and a proxy would dial for us.
				Proxy:                 nil,
				DialContext:           dialer.DialContext,
				TLSHandshakeTimeout:   jwksFetchTimeout,
				ResponseHeaderTimeout: jwksFetchTimeout,
				MaxIdleConnsPerHost:   2,
				IdleConnTimeout:       time.Minute,
				ForceAttemptHTTP2:     true,
			},
			// A redirect could lead anywhere the URI's scheme check
			// did not look; the registered URI is the one fetched.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errors.New("jwks_uri redirects; register the final URL")
			},
		},
	}
}

// dialControl refuses, unless allowPrivate, to connect to an address that
// is not public. It runs on the resolved address, just before the
// connection is made, so a name that resolves to a private address, now
// or after a rebinding, is refused too.
func dialControl(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return err
		}
		if !publicAddr(ip) {
			return &privateAddrError{ip}
		}
		return nil
	}
}

// privateAddrError is a refused connection to an address that is not public.
type privateAddrError struct{ ip netip.Addr }

func (e *privateAddrError) Error() string {
	return fmt.Sprintf("jwks_uri resolves to %s, which is not a public address (jwks_fetch_allow_private is off)", e.ip)
}

// nonPublic are ranges beyond netip's predicates that never hold a
// client's public key server: carrier-grade NAT, IETF protocol
// assignments, benchmarking, NAT64 (which could reach a private IPv4
// address) and the documentation ranges.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// get returns the key set at uri for an assertion with kid. A set that is
// fresh and holds kid is returned at once, even while another request's
// fetch is in flight, so a stranger's made-up kid never makes the
// integration's own requests wait. Otherwise the set is fetched: when
// there is none or it expired, and, at most once per jwksRefetchEvery,
// when kid is not in it or the caller asks again (refresh: no key
// verified, as when a key without kid was rotated in). A set whose fetch
// fails is used for up to jwksStaleFor past its expiry, so an outage at
// the client's key host is not one at latchkey; a key removed there still
// goes at expiry, as the fetch that succeeds replaces the set.
func (f *jwksFetcher) get(ctx context.Context, uri, kid string, refresh bool) (*jose.JSONWebKeySet, error) {
	if err := f.checkURI(uri); err != nil {
		return nil, err
	}
	for {
		f.mu.Lock()
		now := f.now()
		e := f.entries[uri]
		if e == nil {
			f.evict()
			e = &jwksEntry{}
			f.entries[uri] = e
		}
		fresh := e.set != nil && now.Before(e.expires)
		holds := e.set != nil && (kid == "" || len(e.set.Key(kid)) > 0)
		if fresh && holds && !refresh {
			f.mu.Unlock()
			return e.set, nil
		}
		if done := e.done; done != nil {
			f.mu.Unlock()
			select {
			case <-done:
				refresh = false // that fetch was as good as one of our own
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if e.fetchedAt.IsZero() || now.Sub(e.fetchedAt) >= jwksRefetchEvery {
			e.done = make(chan struct{})
			e.fetchedAt = now
			f.mu.Unlock()
			f.refetch(ctx, uri, e)
			refresh = false
			continue
		}
		// No fetch now: what there is, which the caller may find lacks kid.
		set, err := e.set, e.err
		f.mu.Unlock()
		if set != nil {
			return set, nil
		}
		return nil, err
	}
}

// refetch fetches e's set, whose fetch the caller has marked in flight
// (e.done), and records the outcome.
func (f *jwksFetcher) refetch(ctx context.Context, uri string, e *jwksEntry) {
	// The fetch outlives the request that started it: the others waiting
	// on it would otherwise fail with that request.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
	set, age, err := f.fetch(fctx, uri)
	cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	e.err = err
	switch {
	case err == nil:
		e.set, e.expires = set, now.Add(age)
	case e.set != nil && !now.Before(e.expires.Add(jwksStaleFor)):
		e.set = nil
	}
	close(e.done)
	e.done = nil
}

// evict drops the entry that expires first when the cache is full, f.mu
// held. An entry being fetched is never dropped.
func (f *jwksFetcher) evict() {
	if len(f.entries) < jwksMaxURIs {
		return
	}
	var oldest string
	var at time.Time
	for uri, e := range f.entries {
		if e.done == nil && (oldest == "" || e.expires.Before(at)) {
			oldest, at = uri, e.expires
		}
	}
	delete(f.entries, oldest)
}

func (f *jwksFetcher) checkURI(uri string) error {
	u, err := url.Parse(uri)
	if err != nil {
		return errors.New("jwks_uri is not a URL")
	}
	if u.Scheme != "https" && !(f.allowPrivate && u.Scheme == "http") {
		return errors.New("jwks_uri is not https (http is fetched only with jwks_fetch_allow_private)")
	}
	return nil
}

// fetch gets and checks the set at uri, and returns how long to use it.
func (f *jwksFetcher) fetch(ctx context.Context, uri string) (*jose.JSONWebKeySet, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "latchkey")
	resp, err := f.client.Do(req)
	if err != nil {
		var pe *privateAddrError
		if errors.As(err, &pe) {
			return nil, 0, pe
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, storage.MaxJWKSBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch: %w", err)
	}
	if len(body) > storage.MaxJWKSBytes {
		return nil, 0, fmt.Errorf("the key set is larger than %d bytes", storage.MaxJWKSBytes)
	}
	set, err := storage.ParseJWKS(body)
	if err != nil {
		return nil, 0, err
	}
	return set, cacheAge(resp.Header.Get("Cache-Control")), nil
}

// cacheAge is how long to use a set answered with Cache-Control cc: its
// max-age within [jwksMinAge, jwksMaxAge], else jwksDefaultAge.
func cacheAge(cc string) time.Duration {
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return jwksMinAge
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(d, "max-age="), `"`), 10, 64)
			if err != nil || n < 0 {
				return jwksDefaultAge
			}
			return min(max(time.Duration(min(n, int64(jwksMaxAge/time.Second)))*time.Second, jwksMinAge), jwksMaxAge)
		}
	}
	return jwksDefaultAge
}
