package storage

import (
	"context"
	"time"
)

// Purge deletes what can never be used again: expired access tokens, key
// pairs past their grace deadline (with the tokens issued to them), deleted
// integrations once their key pairs are gone (DeleteIntegration ends the
// pairs, so the steps before take its tokens and pairs), admin tokens
// expired for ExpiredAdminTokenRetention, and retired signing keys no live token needs. It
// works in batches of at most batch rows, each in its own short
// transaction, so a large backlog never holds the writer, or locks many
// rows, for long. It returns how many rows it deleted, or ErrInvalid if
// batch < 1.
//
// On PostgreSQL one replica purges at a time: while another holds the
// janitor's advisory lock, Purge deletes nothing and returns at once.
func (s *Store) Purge(ctx context.Context, batch int) (int64, error) {
	if batch < 1 {
		// A batch that deletes nothing would never end the loop below.
		return 0, invalidf("purge batch size must be at least 1, not %d", batch)
	}
	var n int64
	err := s.dialect.exclusive(ctx, s.wdb, lockJanitor, false, func(querier) error {
		var err error
		n, err = s.purge(ctx, batch)
		return err
	})
	if err != nil && n == 0 {
		return 0, translate("purge", err)
	}
	return n, err
}

func (s *Store) purge(ctx context.Context, batch int) (int64, error) {
	now := s.clock()
	steps := []struct {
		name string
		sql  string
		args []any // the batch size is appended
	}{
		{"expired access tokens", `DELETE FROM access_tokens WHERE signature IN
			(SELECT signature FROM access_tokens WHERE expires_at <= ? LIMIT ?)`, []any{now}},
		{"access tokens of revoked key pairs", `DELETE FROM access_tokens WHERE signature IN
			(SELECT t.signature FROM access_tokens t JOIN key_pairs k ON k.id = t.key_pair_id
			 WHERE k.expires_at <= ? LIMIT ?)`, []any{now}},
		{"revoked key pairs", `DELETE FROM key_pairs WHERE id IN
			(SELECT id FROM key_pairs WHERE expires_at <= ? LIMIT ?)`, []any{now}},
		{"deleted integrations", `DELETE FROM integrations WHERE id IN
			(SELECT id FROM integrations i WHERE i.deleted_at IS NOT NULL AND NOT EXISTS
				(SELECT 1 FROM key_pairs k WHERE k.integration_id = i.id) LIMIT ?)`, nil},
		{"used jtis", `DELETE FROM used_jtis WHERE jti IN
			(SELECT jti FROM used_jtis WHERE expires_at <= ? LIMIT ?)`, []any{now}},
		{"expired admin tokens", `DELETE FROM admin_tokens WHERE seq IN
			(SELECT seq FROM admin_tokens WHERE expires_at <= ? LIMIT ?)`, []any{now.Add(-ExpiredAdminTokenRetention)}},
		// A retired signing key goes once no live token names it, and not
		// before replicas have had time to stop signing with it (their
		// key cache refreshes well within signingKeyGrace).
		{"retired signing keys", `DELETE FROM signing_keys WHERE kid IN
			(SELECT kid FROM signing_keys k WHERE NOT k.active AND k.retired_at <= ? AND NOT EXISTS
				(SELECT 1 FROM access_tokens t WHERE t.kid = k.kid AND t.expires_at > ?) LIMIT ?)`,
			[]any{now.Add(-signingKeyGrace), now}},
	}
	var total int64
	for _, st := range steps {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			start := time.Now()
			res := s.w.WithContext(ctx).Exec(st.sql, append(st.args, batch)...)
			if res.Error != nil {
				return total, unavailable("purge "+st.name, res.Error)
			}
			total += res.RowsAffected
			if res.RowsAffected < int64(batch) {
				break
			}
			// A backlog is worked off in at most a twentieth of the
			// writer's time: requests queued behind a batch get the
			// writer, and on a one-core server the CPU, for nineteen times
			// as long before the next one. Larger shares multiplied
			// introspection's p99 while a large backlog went; at a
			// twentieth it stays close to normal and the purge still keeps
			// up with what one busy core issues (the README's janitor and
			// benchmark sections have the figures).
			select {
			case <-ctx.Done():
			case <-time.After(purgeRest * time.Since(start)):
			}
		}
	}
	return total, nil
}

// purgeRest is how long a purge rests after a full batch, as a multiple of
// the time the batch took.
const purgeRest = 19

// signingKeyGrace is how long a retired signing key is kept even with no
// live token, covering replicas whose key cache has not yet seen the
// rotation.
const signingKeyGrace = 10 * time.Minute
