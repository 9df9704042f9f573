package storage

import (
	"context"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/storage/storagetest"
)

// The token and introspection endpoints' storage work, without HTTP:
// client authentication (the lookup and the keyed hash), the token insert
// and the token lookup, on each backend, from 16 goroutines (as many as
// the server benchmarks' clients). Run with -benchmem.

func BenchmarkStorage(b *testing.B) {
	backends := []struct {
		name string
		dsn  func(b *testing.B) (driver, dsn string)
	}{
		{"sqlite", func(b *testing.B) (string, string) {
			return "sqlite", filepath.Join(b.TempDir(), "latchkey.db")
		}},
		{"postgres", func(b *testing.B) (string, string) { return "postgres", storagetest.PostgresDSN(b) }},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			driver, dsn := be.dsn(b)
			s, _ := openStore(b, driver, dsn, nil, testSecret)
			ctx := context.Background()
			_, nk, err := s.CreateIntegration(ctx, IntegrationInput{Name: "bench", Scopes: []string{"read"}}, testActor)
			if err != nil {
				b.Fatal(err)
			}
			c, err := s.GetClient(ctx, nk.ClientID)
			if err != nil {
				b.Fatal(err)
			}

			// The hasher is the token endpoint's; the store keeps the hash.
			h := clientSecretHasher(testSecret)
			b.Run("ClientAuthentication", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						c, err := s.GetClient(ctx, nk.ClientID)
						if err == nil {
							err = h.Compare(ctx, c.SecretHash, []byte(nk.ClientSecret))
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			})

			var n atomic.Int64
			b.Run("InsertToken", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						now := s.Now()
						tok := newToken(c, now, time.Hour)
						tok.Signature = "bench-" + strconv.FormatInt(n.Add(1), 10)
						if err := s.CreateToken(ctx, tok, now); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})

			b.Run("LookupToken", func(b *testing.B) {
				if n.Load() == 0 {
					b.Skip("no tokens inserted")
				}
				var i atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						sig := "bench-" + strconv.FormatInt(i.Add(1)%n.Load()+1, 10)
						if _, err := s.GetToken(ctx, sig); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
