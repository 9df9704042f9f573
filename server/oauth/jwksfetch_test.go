package oauth

import (
	"net/netip"
	"testing"
	"time"
)

// TestPublicAddr: only public unicast addresses are fetched from; every
// kind the contract names (loopback, private, link-local, multicast,
// unspecified) is refused, in IPv4, IPv6 and IPv4-mapped IPv6.
func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"93.184.215.14": true, "2606:2800:21f:cb07:6820:80da:af6b:8b2c": true, "1.1.1.1": true,
		"127.0.0.1": false, "127.8.9.10": false, "::1": false, "::ffff:127.0.0.1": false,
		"10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false, "fd00::1": false, "::ffff:10.0.0.1": false,
		"169.254.169.254": false, "fe80::1": false,
		"224.0.0.1": false, "239.255.255.250": false, "ff02::1": false, "ff01::1": false,
		"0.0.0.0": false, "::": false, "0.1.2.3": false,
		"100.64.0.1": false, "198.18.0.1": false, "64:ff9b::a00:1": false, "255.255.255.255": false,
	} {
		if got := publicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestCacheAge: a key set's max-age is kept within a minute and an hour.
func TestCacheAge(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                             jwksDefaultAge,
		"public, max-age=600":          10 * time.Minute,
		"max-age=1":                    time.Minute,
		"max-age=0":                    time.Minute,
		"max-age=31536000":             time.Hour,
		"max-age=99999999999999999999": jwksDefaultAge,
		"no-store":                     time.Minute,
		"no-cache, max-age=600":        time.Minute,
		"Max-Age=120":                  2 * time.Minute,
		"max-age=-5":                   jwksDefaultAge,
	} {
		if got := cacheAge(cc); got != want {
			t.Errorf("cacheAge(%q) = %v, want %v", cc, got, want)
		}
	}
}
