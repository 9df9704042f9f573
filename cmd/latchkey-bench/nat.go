package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const natUsage = `Usage: latchkey-bench nat -url URL [-admin-token TOKEN] [flags]

Plays the traffic of one shared address (a NAT, a Kubernetes node, a
proxy) behind which one integration's deployment was left with a revoked
key pair, and counts what everyone else behind that address got. All of
it leaves from one address (-source, or the system's choice):

  stale client   an integration whose key pair was regenerated without
                 grace; it keeps presenting the old pair, one request at a
                 time, -stale-rate a second (or as fast as it is answered,
                 when answers take longer). It starts -lead before the
                 rest, so that its failures have been counted by then, and
                 runs until the rest is done.
  healthy        -clients integrations, each asking for -requests tokens
                 one after the other, spread evenly over -d, all together
                 -clients x -requests / -d a second.
  new pair       the stale client's integration with its new key pair, as
                 its other, updated deployment: -requests tokens over -d,
                 like a healthy integration.
  introspection  a resource server (can_introspect) introspecting an
                 active token, -introspect-rate a second over -d, each on
                 time whether the previous one was answered or not (it
                 does so for many API calls at once).

The report gives, for the -d window: the healthy token requests that got a
token, out of all; the same for the new pair; the introspections answered
active; the stale client's answers by status and how long it waited for
each. A latchkey whose failure limit counts per address refuses everyone
behind the address once the stale client has spent the address's burst.

The integrations are created (bench-nat-...) through the admin API and
deleted at the end, on Ctrl-C too; their tokens are requested with
client_secret_basic. The admin token may come from LATCHKEY_ADMIN_TOKEN.

Flags:
`

type natConfig struct {
	url, adminURL, adminToken string
	source                    net.IP
	clients, requests         int
	duration, lead, timeout   time.Duration
	staleRate, introRate      float64
	noTokenCap, json          bool
}

func runNAT(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c natConfig
	fs := flag.NewFlagSet("nat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, natUsage); fs.PrintDefaults() }
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of the latchkey")
	fs.StringVar(&c.adminURL, "admin-url", "", "base URL of the admin API, when latchkey serves it on admin_listen (default: -url)")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin API token (default: $LATCHKEY_ADMIN_TOKEN)")
	source := fs.String("source", "", "the shared address: local IP address all connections leave from (default: the system's choice)")
	fs.IntVar(&c.clients, "clients", 30, "healthy integrations")
	fs.IntVar(&c.requests, "requests", 10, "token requests of each healthy integration")
	fs.DurationVar(&c.duration, "d", 10*time.Second, "the window over which the healthy requests are spread")
	fs.DurationVar(&c.lead, "lead", 10*time.Second, "how long the stale client retries alone first (latchkey's default burst of 20 failures, refilling at 1/s, is spent after about 7s at 4/s)")
	fs.Float64Var(&c.staleRate, "stale-rate", 4, "the stale client's requests a second, at most")
	fs.Float64Var(&c.introRate, "introspect-rate", 10, "introspections a second by the resource server")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "a request without an answer after this long counts as an error")
	fs.BoolVar(&c.noTokenCap, "no-token-cap", false, "create the integrations with token_rate_per_minute 0 (a latchkey without the field refuses it)")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if c.source, err = parseSource("nat", *source); err != nil {
		return err
	}
	if c.adminToken == "" {
		c.adminToken = getenv("LATCHKEY_ADMIN_TOKEN")
	}
	if c.adminURL == "" {
		c.adminURL = c.url
	}
	switch {
	case c.adminToken == "":
		return usageError{"nat: needs -admin-token or LATCHKEY_ADMIN_TOKEN"}
	case c.clients < 1 || c.requests < 1:
		return usageError{"nat: -clients and -requests must be at least 1"}
	case c.duration <= 0 || c.lead < 0 || c.timeout <= 0:
		return usageError{"nat: -d and -timeout must be positive, -lead not negative"}
	case c.staleRate <= 0 || c.introRate <= 0:
		return usageError{"nat: the rates must be positive"}
	}
	if _, err := parseTarget(c.url); err != nil {
		return usageError{"nat: " + err.Error()}
	}

	s := newSetup(c.adminURL, c.adminToken, c.url, c.source, stderr)
	s.noTokenCap = c.noTokenCap
	defer s.cleanup(context.WithoutCancel(ctx))
	r, err := playNAT(ctx, c, s)
	if err != nil {
		return err
	}
	return writeReport(stdout, r, c.json)
}

// natCounts are the figures of one party of the scenario.
type natCounts struct {
	Attempts int `json:"attempts"`
	// OK counts the answers that did what the party wanted: a token, or
	// an introspection answered active. The stale client has none.
	OK int `json:"ok"`
	// Status counts the answers by HTTP status; "error" counts requests
	// that got no answer.
	Status  map[string]int `json:"status"`
	Latency latency        `json:"latency_ms"`
	// RetryAfter is the mean Retry-After of the 429s, in seconds.
	RetryAfter float64 `json:"mean_retry_after_s,omitempty"`

	durs       []time.Duration
	retryAfter []int
}

type natReport struct {
	URL        string     `json:"url"`
	Source     string     `json:"source"`
	Lead       float64    `json:"lead_s"`
	Duration   float64    `json:"duration_s"`
	Clients    int        `json:"clients"`
	Healthy    *natCounts `json:"healthy"`
	NewPair    *natCounts `json:"new_pair"`
	Introspect *natCounts `json:"introspect"`
	// Stale counts the stale client's requests from the start of the
	// window until the others are done, StaleLead those of the lead.
	Stale     *natCounts `json:"stale"`
	StaleLead *natCounts `json:"stale_lead"`
}

// natParty records one party's requests; its methods are safe for
// concurrent use.
type natParty struct {
	mu sync.Mutex
	c  natCounts
}

func newParty() *natParty { return &natParty{c: natCounts{Status: map[string]int{}}} }

func (p *natParty) record(status int, ok bool, d time.Duration, retryAfter string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.c.Attempts++
	key := "error"
	if status > 0 {
		key = strconv.Itoa(status)
		p.c.durs = append(p.c.durs, d)
	}
	p.c.Status[key]++
	if ok {
		p.c.OK++
	}
	if status == http.StatusTooManyRequests {
		if n, err := strconv.Atoi(retryAfter); err == nil {
			p.c.retryAfter = append(p.c.retryAfter, n)
		}
	}
}

// counts returns the figures, latency percentiles included.
func (p *natParty) counts() *natCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.c
	d := append([]time.Duration(nil), c.durs...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	if n := len(d); n > 0 {
		var sum time.Duration
		for _, v := range d {
			sum += v
		}
		q := func(f float64) float64 { return ms(d[min(n-1, int(f*float64(n)))]) }
		c.Latency = latency{P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(d[n-1]), Mean: ms(sum / time.Duration(n))}
	}
	if n := len(c.retryAfter); n > 0 {
		sum := 0
		for _, v := range c.retryAfter {
			sum += v
		}
		c.RetryAfter = float64(sum) / float64(n)
	}
	return &c
}

// natClient makes the scenario's OAuth requests, all from one address.
type natClient struct {
	url     string
	hc      *http.Client
	timeout time.Duration
}

// post sends one form with kp's Basic auth and returns the status (0 when
// there was no answer), the body and the Retry-After header.
func (nc *natClient) post(ctx context.Context, path string, kp keyPair, form url.Values) (int, []byte, string, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, nc.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", nc.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, "", 0
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(kp.id), url.QueryEscape(kp.secret))
	t0 := time.Now()
	resp, err := nc.hc.Do(req)
	if err != nil {
		return 0, nil, "", time.Since(t0)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	d := time.Since(t0)
	if err != nil {
		return 0, nil, "", d
	}
	return resp.StatusCode, b, resp.Header.Get("Retry-After"), d
}

// token asks for a token and records the answer; ok means a token came.
func (nc *natClient) token(ctx context.Context, kp keyPair, p *natParty) {
	status, b, ra, d := nc.post(ctx, "/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
	var out struct {
		AccessToken string `json:"access_token"`
	}
	ok := status == http.StatusOK && json.Unmarshal(b, &out) == nil && out.AccessToken != ""
	p.record(status, ok, d, ra)
}

// introspect introspects token and records the answer; ok means active.
func (nc *natClient) introspect(ctx context.Context, rs keyPair, token string, p *natParty) {
	status, b, ra, d := nc.post(ctx, "/oauth2/introspect", rs, url.Values{"token": {token}})
	var out struct {
		Active bool `json:"active"`
	}
	ok := status == http.StatusOK && json.Unmarshal(b, &out) == nil && out.Active
	p.record(status, ok, d, ra)
}

// paced calls do at most n times (n < 0: no limit), one call at a time,
// the i-th no earlier than start+i*interval, until stop says that the
// next call, due at the given time, is not to be made, or ctx ends. A call
// that outlasts its interval delays the next; the caller does not catch up
// with a burst, as a client that waits for each answer would not.
func paced(ctx context.Context, start time.Time, interval time.Duration, n int, stop func(next time.Time) bool, do func(context.Context)) {
	next := start
	for i := 1; n != 0 && !stop(next); i++ {
		if !sleepUntil(ctx, next) {
			return
		}
		do(ctx)
		n--
		next = start.Add(time.Duration(i) * interval)
		if now := time.Now(); next.Before(now) {
			start, next, i = now, now, 0
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func every(rate float64) time.Duration { return time.Duration(float64(time.Second) / rate) }

func playNAT(ctx context.Context, c natConfig, s *setup) (*natReport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = sourceDialer(c.source, 5*time.Second).DialContext
	// Every party keeps its connection, as real clients do.
	tr.MaxIdleConnsPerHost = c.clients + 8
	defer tr.CloseIdleConnections()
	nc := &natClient{url: s.url, hc: &http.Client{Transport: tr}, timeout: c.timeout}

	fmt.Fprintf(s.log, "nat: creating %d integrations\n", c.clients+2)
	healthy := make([]keyPair, c.clients)
	for i := range healthy {
		var err error
		if healthy[i], err = s.integration(ctx, fmt.Sprintf("bench-nat-%02d", i), map[string]any{"scopes": []string{"read"}}); err != nil {
			return nil, err
		}
	}
	rs, err := s.integration(ctx, "bench-nat-rs", map[string]any{"can_introspect": true})
	if err != nil {
		return nil, err
	}
	old, err := s.integration(ctx, "bench-nat-stale", map[string]any{"scopes": []string{"read"}})
	if err != nil {
		return nil, err
	}
	fresh, err := s.regenerate(ctx, "bench-nat-stale")
	if err != nil {
		return nil, err
	}
	// The resource server introspects a token taken before anyone fails.
	token, err := s.token(ctx, healthy[0])
	if err != nil {
		return nil, err
	}
	if err := s.checkActive(ctx, rs, token); err != nil {
		return nil, err
	}

	healthyP, newP, introP := newParty(), newParty(), newParty()
	staleLead, staleWin := newParty(), newParty()
	r := &natReport{URL: c.url, Source: "the system's choice", Lead: c.lead.Seconds(), Duration: c.duration.Seconds(), Clients: c.clients}
	if c.source != nil {
		r.Source = c.source.String()
	}

	t0 := time.Now()
	winStart := t0.Add(c.lead)
	fmt.Fprintf(s.log, "nat: stale client alone for %s, then everyone for %s\n", c.lead, c.duration)

	// The stale client runs until the others are done.
	var othersDone atomic.Bool
	staleDone := make(chan struct{})
	go func() {
		defer close(staleDone)
		paced(ctx, t0, every(c.staleRate), -1, func(time.Time) bool { return othersDone.Load() }, func(ctx context.Context) {
			p := staleWin
			if time.Now().Before(winStart) {
				p = staleLead
			}
			nc.token(ctx, old, p)
		})
	}()

	never := func(time.Time) bool { return false }
	var wg sync.WaitGroup
	slot := c.duration / time.Duration(c.clients*c.requests)
	for i, kp := range healthy {
		// Integration i's j-th request is the (j*clients+i)-th of all, so
		// that the requests of all integrations interleave evenly; each
		// makes all of its requests, late if its answers are slow.
		start := winStart.Add(time.Duration(i) * slot)
		wg.Go(func() {
			paced(ctx, start, slot*time.Duration(c.clients), c.requests, never, func(ctx context.Context) { nc.token(ctx, kp, healthyP) })
		})
	}
	// The new pair's deployment behaves as a healthy integration does,
	// half a slot out of step with them.
	wg.Go(func() {
		start := winStart.Add(slot / 2)
		paced(ctx, start, slot*time.Duration(c.clients), c.requests, never, func(ctx context.Context) { nc.token(ctx, fresh, newP) })
	})
	// A resource server introspects for many API calls at once: each
	// introspection starts on time, whether the last was answered or not,
	// so that their number is the same whatever the server does.
	wg.Go(func() {
		var calls sync.WaitGroup
		n := int(c.introRate * c.duration.Seconds())
		for k := range n {
			if !sleepUntil(ctx, winStart.Add(time.Duration(k)*every(c.introRate))) {
				break
			}
			calls.Go(func() { nc.introspect(ctx, rs, token, introP) })
		}
		calls.Wait()
	})
	wg.Wait()
	othersDone.Store(true)
	<-staleDone
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	r.Healthy, r.NewPair, r.Introspect = healthyP.counts(), newP.counts(), introP.counts()
	r.Stale, r.StaleLead = staleWin.counts(), staleLead.counts()
	return r, nil
}

func (r *natReport) print(w io.Writer) {
	fmt.Fprintf(w, "nat: %d integrations, a resource server and a stale client, all from %s, against %s\n", r.Clients, r.Source, r.URL)
	fmt.Fprintf(w, "  the stale client alone for %s: %d requests, %s\n", seconds(r.Lead), r.StaleLead.Attempts, statusList(r.StaleLead.Status))
	fmt.Fprintf(w, "  then everyone for %s:\n", seconds(r.Duration))
	line := func(name, what string, c *natCounts) {
		fmt.Fprintf(w, "    %-16s %s %-6s  status %s;  latency p50 %.1fms  p99 %.1fms  max %.1fms\n",
			name, fmt.Sprintf("%4d/%-4d", c.OK, c.Attempts), what, statusList(c.Status), c.Latency.P50, c.Latency.P99, c.Latency.Max)
	}
	line("healthy tokens", "OK", r.Healthy)
	line("new pair tokens", "OK", r.NewPair)
	line("introspections", "active", r.Introspect)
	fmt.Fprintf(w, "    %-16s %4d requests    status %s;  answered after %.0fms on average (max %.0fms)",
		"stale client", r.Stale.Attempts, statusList(r.Stale.Status), r.Stale.Latency.Mean, r.Stale.Latency.Max)
	if r.Stale.RetryAfter > 0 {
		fmt.Fprintf(w, ", Retry-After %.1fs on average", r.Stale.RetryAfter)
	}
	fmt.Fprintln(w)
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

func statusList(m map[string]int) string {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = uint64(v)
	}
	return countList(c)
}
