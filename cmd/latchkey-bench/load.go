package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"
)

const loadUsage = `Usage: latchkey-bench load -url URL [-admin-token TOKEN] -mode MODE [flags]

Drives URL from -c keep-alive connections for -d after a -warmup that is
not counted, then prints requests, requests/s, latency percentiles, every
response status and every transport error.

Modes:
  token       POST /oauth2/token, client_credentials with Basic auth
  introspect  POST /oauth2/introspect of one active token, as a resource server
  mixed       one token request per -mix introspections
  badsecret   token requests for one client with wrong secrets: well formed,
              with a valid checksum, so the server hashes and compares each
              (-malformed: a bad checksum, refused before any hashing). A
              server that rate-limits failures answers 429: counted in the
              status breakdown like any answer, never an error; the tool
              ignores Retry-After and keeps sending, as an attacker would
  floor       POST a token-request-sized form to URL itself; no setup, no
              admin token (for 'latchkey-bench floor' or any HTTP server)

Every mode but floor creates its own integrations through the admin API
(bench-<random>, and bench-rs-<random> that may introspect) and deletes them
at the end, on Ctrl-C too. The admin token may come from LATCHKEY_ADMIN_TOKEN.

With -source, every connection the tool makes (the load's and the
setup's) leaves from that local address, so that two runs at once reach
the server from two different remote addresses: on Linux any 127.0.0.0/8
address is a loopback source (127.0.0.2, 127.0.0.3, ...).

With -sources, every request goes on a fresh connection, bound to the
next address of the range (round and round): a flood from a great many
addresses, which no limit per address can catch. The setup's connections
leave from the system's choice of address. Connections are closed with a
reset (SO_LINGER 0) once their answer is read, so the tool leaves none in
TIME_WAIT, and each socket takes its port at connect time: a run at
thousands of connections a second runs out of neither ports nor memory.
Latency still runs from the first byte written, so it leaves out the
connection set-up.

A request counts when its answer arrives within the measurement; latency
runs from the first byte written to the last byte read. "client CPU" is
the CPU the tool itself used per second: well under one core per event
loop means the tool was not what limited the figures.

Flags:
`

type loadConfig struct {
	url, adminURL, adminToken, mode string
	conns, loops, mix               int
	engine                          string
	duration, warmup, timeout       time.Duration
	malformed, json                 bool
	cpuProfile                      string
	// source is the -source address; nil lets the system choose.
	source net.IP
	// sources is the -sources range; with it every request goes on a
	// fresh connection from the range's next address.
	sources *sourceRange
	// noTokenCap creates the integrations with token_rate_per_minute 0.
	noTokenCap bool
}

func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c loadConfig
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, loadUsage); fs.PrintDefaults() }
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of the latchkey (http only); in floor mode, the URL posted to")
	fs.StringVar(&c.adminURL, "admin-url", "", "base URL of the admin API, when latchkey serves it on admin_listen (default: -url)")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin API token (default: $LATCHKEY_ADMIN_TOKEN)")
	fs.StringVar(&c.mode, "mode", "token", "token, introspect, mixed, badsecret or floor")
	fs.IntVar(&c.conns, "c", 32, "concurrent connections, each with one request in flight")
	fs.DurationVar(&c.duration, "d", 15*time.Second, "measured duration")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "load before the measurement, not counted")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "a request without an answer after this long is a transport error (0: never)")
	fs.StringVar(&c.engine, "engine", defaultEngine, "epoll (Linux: event loops on raw system calls, like wrk) or goroutines (a goroutine per connection, portable)")
	fs.IntVar(&c.loops, "t", 1, "event loops of the epoll engine, each a goroutine with its share of the connections (like wrk -t)")
	fs.IntVar(&c.mix, "mix", 50, "in mixed mode, introspections per token request")
	fs.BoolVar(&c.malformed, "malformed", false, "in badsecret mode, send secrets with a bad checksum")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of text")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile of the run to this file, to check it stays cheap")
	source := fs.String("source", "", "local IP address the tool's connections leave from, e.g. 127.0.0.2 (default: the system's choice)")
	sources := fs.String("sources", "", "IPv4 range, e.g. 127.64.0.0/10: send every request on a fresh connection from the range's next address")
	fs.BoolVar(&c.noTokenCap, "no-token-cap", false, "create the integrations with token_rate_per_minute 0 (no cap on tokens issued; a latchkey without the field refuses it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sources != "" {
		if *source != "" {
			return usageError{"load: -source and -sources exclude each other"}
		}
		r, err := parseSourceRange(*sources)
		if err != nil {
			return usageError{fmt.Sprintf("load: -sources: %v", err)}
		}
		if err := r.check(); err != nil {
			return fmt.Errorf("load: -sources %s is not a range of this machine's addresses: %w", r, err)
		}
		c.sources = r
	}
	var err error
	if c.source, err = parseSource("load", *source); err != nil {
		return err
	}
	if c.adminToken == "" {
		c.adminToken = getenv("LATCHKEY_ADMIN_TOKEN")
	}
	if c.adminURL == "" {
		c.adminURL = c.url
	}
	switch {
	case c.conns < 1:
		return usageError{"load: -c must be at least 1"}
	case c.duration <= 0 || c.warmup < 0 || c.timeout < 0:
		return usageError{"load: -d must be positive, -warmup and -timeout not negative"}
	case c.mix < 1:
		return usageError{"load: -mix must be at least 1"}
	case c.loops < 1 || c.loops > c.conns:
		return usageError{"load: -t must be between 1 and -c"}
	case c.engine != "epoll" && c.engine != "goroutines":
		return usageError{fmt.Sprintf("load: unknown -engine %q; want epoll or goroutines", c.engine)}
	}
	t, err := parseTarget(c.url)
	if err != nil {
		return usageError{"load: " + err.Error()}
	}
	if err := sameVersion(c.source, t.addr); err != nil {
		return err
	}
	if c.sources != nil {
		if err := sameVersion(net.IPv4zero, t.addr); err != nil {
			return usageError{fmt.Sprintf("load: -sources %s is IPv4 and the server's address is not", c.sources)}
		}
	}
	switch c.mode {
	case "floor":
	case "token", "introspect", "mixed", "badsecret":
		if c.adminToken == "" {
			return usageError{"load: mode " + c.mode + " needs -admin-token or LATCHKEY_ADMIN_TOKEN"}
		}
	default:
		return usageError{fmt.Sprintf("load: unknown mode %q; want token, introspect, mixed, badsecret or floor", c.mode)}
	}

	var s *setup
	if c.mode != "floor" {
		s = newSetup(c.adminURL, c.adminToken, c.url, c.source, stderr)
		s.noTokenCap = c.noTokenCap
		// Cleanup runs on Ctrl-C too, when ctx is already cancelled.
		defer s.cleanup(context.WithoutCancel(ctx))
	}
	p, err := makePlan(ctx, c, t, s)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	r, err := newLoadRun(c, t.addr, p).run(ctx)
	if c.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	return writeReport(stdout, r, c.json)
}

// writeReport writes a run's figures as indented JSON, or as text.
func writeReport(w io.Writer, r interface{ print(io.Writer) }, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	r.print(w)
	return nil
}

// target is where the load goes: a TCP address and the URL's path prefix.
type target struct {
	host, addr, prefix string
}

func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return target{}, fmt.Errorf("-url %q: want http://host[:port][/prefix] (https is not supported)", raw)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return target{host: u.Host, addr: addr, prefix: strings.TrimRight(u.Path, "/")}, nil
}

// sameVersion checks that source, when given, can reach addr when addr is
// an IP address: a socket cannot leave from an IPv4 address to an IPv6 one.
// (The epoll engine checks again once it has resolved a host name.)
func sameVersion(source net.IP, addr string) error {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if source == nil || ip == nil || (source.To4() == nil) == (ip.To4() == nil) {
		return nil
	}
	return usageError{fmt.Sprintf("load: -source %s and the server's address %s are not of the same IP version", source, ip)}
}

// plan is what each connection sends: slots of prebuilt requests, each of
// one kind (reported apart), walked in the order seq, round and round.
type plan struct {
	kinds    []string
	reqs     [][]byte
	slotKind []int
	seq      []int
}

func basicAuth(id, secret string) string {
	// RFC 6749 §2.3.1: both parts are form-encoded before base64.
	cred := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(cred))
}

const tokenForm = "grant_type=client_credentials"

func makePlan(ctx context.Context, c loadConfig, t target, s *setup) (*plan, error) {
	tokenPath, introspectPath := t.prefix+"/oauth2/token", t.prefix+"/oauth2/introspect"
	switch c.mode {
	case "floor":
		// The same shape and size as a token request, so the server
		// reads as much as latchkey would.
		path := t.prefix
		if path == "" {
			path = "/"
		}
		req := buildRequest(t.host, path, tokenForm, basicAuth("lk_ci_"+strings.Repeat("a", 26), wrongSecret()))
		return &plan{kinds: []string{"floor"}, reqs: [][]byte{req}, slotKind: []int{0}, seq: []int{0}}, nil

	case "token":
		job, err := s.integration(ctx, "bench", map[string]any{"scopes": []string{"read"}})
		if err != nil {
			return nil, err
		}
		req := buildRequest(t.host, tokenPath, tokenForm, basicAuth(job.id, job.secret))
		return &plan{kinds: []string{"token"}, reqs: [][]byte{req}, slotKind: []int{0}, seq: []int{0}}, nil

	case "badsecret":
		job, err := s.integration(ctx, "bench", map[string]any{"scopes": []string{"read"}})
		if err != nil {
			return nil, err
		}
		// Many different wrong secrets, so a server that remembered
		// recent failures would still have to do the work.
		p := &plan{kinds: []string{"badsecret"}}
		for i := range 64 {
			secret := wrongSecret()
			if c.malformed {
				secret = breakChecksum(secret)
			}
			p.reqs = append(p.reqs, buildRequest(t.host, tokenPath, tokenForm, basicAuth(job.id, secret)))
			p.slotKind = append(p.slotKind, 0)
			p.seq = append(p.seq, i)
		}
		return p, nil

	case "introspect", "mixed":
		job, err := s.integration(ctx, "bench", map[string]any{"scopes": []string{"read"}})
		if err != nil {
			return nil, err
		}
		rs, err := s.integration(ctx, "bench-rs", map[string]any{"can_introspect": true})
		if err != nil {
			return nil, err
		}
		token, err := s.token(ctx, job)
		if err != nil {
			return nil, err
		}
		if err := s.checkActive(ctx, rs, token); err != nil {
			return nil, err
		}
		intro := buildRequest(t.host, introspectPath, "token="+url.QueryEscape(token), basicAuth(rs.id, rs.secret))
		if c.mode == "introspect" {
			return &plan{kinds: []string{"introspect"}, reqs: [][]byte{intro}, slotKind: []int{0}, seq: []int{0}}, nil
		}
		tok := buildRequest(t.host, tokenPath, tokenForm, basicAuth(job.id, job.secret))
		p := &plan{kinds: []string{"token", "introspect"}, reqs: [][]byte{tok, intro}, slotKind: []int{0, 1}, seq: []int{0}}
		for range c.mix {
			p.seq = append(p.seq, 1)
		}
		return p, nil
	}
	return nil, fmt.Errorf("unknown mode %q", c.mode)
}

// wrongSecret returns a fresh client secret in latchkey's format (see
// server/oauth/credential): lk_cs_, 32 random bytes in base64url, and the CRC32
// of all that in base62. It passes the server's checksum test, so the
// server must look the client up and compare hashes to refuse it.
func wrongSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	s := "lk_cs_" + base64.RawURLEncoding.EncodeToString(b[:])
	return s + secretChecksum(s)
}

func secretChecksum(s string) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	n := crc32.ChecksumIEEE([]byte(s))
	var out [6]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62[n%62]
		n /= 62
	}
	return string(out[:])
}

// breakChecksum changes the last checksum character of secret, so the
// server refuses it on shape alone.
func breakChecksum(secret string) string {
	last := byte('0')
	if secret[len(secret)-1] == last {
		last = '1'
	}
	return secret[:len(secret)-1] + string(last)
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// stats are the figures of one kind of request, or of all.
type stats struct {
	Requests uint64            `json:"requests"`
	RPS      float64           `json:"requests_per_second"`
	Latency  latency           `json:"latency_ms"`
	Status   map[string]uint64 `json:"status"`
	Non2xx   uint64            `json:"non_2xx"`
}

type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type report struct {
	Mode        string  `json:"mode"`
	URL         string  `json:"url"`
	Source      string  `json:"source,omitempty"`
	Sources     string  `json:"sources,omitempty"`
	Connections int     `json:"connections"`
	Duration    float64 `json:"duration_s"`
	stats
	TransportErrors uint64            `json:"transport_errors"`
	Errors          map[string]uint64 `json:"errors"`
	// Stalled counts the requests unanswered for a second or more when
	// the run ended (not counted in requests or errors).
	Stalled uint64 `json:"stalled_at_end"`
	// ClientCPU is the CPU time the tool used per second of measurement:
	// well under 1 on a core of its own means the tool was not the limit.
	ClientCPU float64          `json:"client_cpu_cores"`
	Kinds     map[string]stats `json:"kinds,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func makeStats(h *hist, status []uint64, secs float64) stats {
	s := stats{Requests: h.n, Status: map[string]uint64{}}
	if secs > 0 {
		s.RPS = float64(h.n) / secs
	}
	s.Latency = latency{
		P50: ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)),
		Max: ms(time.Duration(h.max)), Mean: ms(h.mean()),
	}
	for code, n := range status {
		if n == 0 {
			continue
		}
		s.Status[strconv.Itoa(code)] = n
		if code < 200 || code > 299 {
			s.Non2xx += n
		}
	}
	return s
}

func (lr *loadRun) report(measured time.Duration, cpu time.Duration) *report {
	secs := measured.Seconds()
	r := &report{
		Mode: lr.c.mode, URL: lr.c.url, Connections: lr.c.conns, Duration: secs,
		Errors: map[string]uint64{},
	}
	if lr.c.source != nil {
		r.Source = lr.c.source.String()
	}
	if lr.c.sources != nil {
		r.Sources = lr.c.sources.String()
	}
	all, allStatus := newHist(), make([]uint64, 600)
	kinds := map[string]stats{}
	for k, name := range lr.plan.kinds {
		h, status := newHist(), make([]uint64, 600)
		for _, f := range lr.figs {
			h.merge(f.hists[k])
			for code, n := range f.status[k] {
				status[code] += n
			}
		}
		all.merge(h)
		for code, n := range status {
			allStatus[code] += n
		}
		kinds[name] = makeStats(h, status, secs)
	}
	r.stats = makeStats(all, allStatus, secs)
	if len(kinds) > 1 {
		r.Kinds = kinds
	}
	for _, f := range lr.figs {
		for kind, n := range f.errs {
			r.Errors[kind] += n
			r.TransportErrors += n
		}
	}
	if secs > 0 {
		r.ClientCPU = cpu.Seconds() / secs
	}
	return r
}

func (r *report) print(w io.Writer) {
	from := ""
	if r.Source != "" {
		from = " from " + r.Source
	}
	if r.Sources != "" {
		from = " from " + r.Sources + ", a fresh connection and address for every request"
	}
	fmt.Fprintf(w, "mode %s, %d connections, %s against %s%s\n", r.Mode, r.Connections,
		time.Duration(r.Duration*float64(time.Second)).Round(time.Millisecond), r.URL, from)
	printStats(w, "", r.stats)
	names := make([]string, 0, len(r.Kinds))
	for name := range r.Kinds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %s:\n", name)
		printStats(w, "  ", r.Kinds[name])
	}
	if r.TransportErrors == 0 {
		fmt.Fprintf(w, "  transport errors  none\n")
	} else {
		fmt.Fprintf(w, "  transport errors  %d: %s\n", r.TransportErrors, countList(r.Errors))
	}
	if r.Stalled > 0 {
		fmt.Fprintf(w, "  stalled at end    %d requests unanswered for %s or more\n", r.Stalled, stallTime)
	}
	fmt.Fprintf(w, "  client CPU        %.2f cores\n", r.ClientCPU)
}

func printStats(w io.Writer, indent string, s stats) {
	fmt.Fprintf(w, "%s  requests          %d\n", indent, s.Requests)
	fmt.Fprintf(w, "%s  requests/s        %.1f\n", indent, s.RPS)
	fmt.Fprintf(w, "%s  latency           p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms  (mean %.3fms)\n",
		indent, s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max, s.Latency.Mean)
	fmt.Fprintf(w, "%s  status            %s", indent, countList(s.Status))
	if s.Non2xx > 0 {
		fmt.Fprintf(w, "  (%d non-2xx)", s.Non2xx)
	}
	fmt.Fprintln(w)
}

// countList shows a tally as "key: n" pairs in key order, or "none".
func countList[N int | uint64](m map[string]N) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
