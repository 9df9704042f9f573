package storage

import (
	"context"
	"fmt"
	"time"
)

// Purge deletes what can never be used again: expired access tokens, key
// pairs past their grace deadline (with the tokens issued to them) and
// expired admin tokens. It works in batches of at most batch rows, each in
// its own short transaction, so a large backlog never holds the writer for
// long. It returns how many rows it deleted, or ErrInvalid if batch < 1.
func (s *Store) Purge(ctx context.Context, batch int) (int64, error) {
	if batch < 1 {
		// A batch that deletes nothing would never end the loop below.
		return 0, invalidf("purge batch size must be at least 1, not %d", batch)
	}
	now := s.clock()
	steps := []struct{ name, sql string }{
		{"expired access tokens", `DELETE FROM access_tokens WHERE signature IN
			(SELECT signature FROM access_tokens WHERE expires_at <= ? LIMIT ?)`},
		{"access tokens of revoked key pairs", `DELETE FROM access_tokens WHERE signature IN
			(SELECT t.signature FROM access_tokens t JOIN key_pairs k ON k.id = t.key_pair_id
			 WHERE k.expires_at <= ? LIMIT ?)`},
		{"revoked key pairs", `DELETE FROM key_pairs WHERE id IN
			(SELECT id FROM key_pairs WHERE expires_at <= ? LIMIT ?)`},
		{"expired admin tokens", `DELETE FROM admin_tokens WHERE seq IN
			(SELECT seq FROM admin_tokens WHERE expires_at <= ? LIMIT ?)`},
	}
	// A retired signing key goes once no live token names it, and not
	// before replicas have had time to stop signing with it (their key
	// cache refreshes well within signingKeyGrace).
	keys := s.w.WithContext(ctx).Exec(`DELETE FROM signing_keys WHERE NOT active AND retired_at <= ?
		AND NOT EXISTS (SELECT 1 FROM access_tokens t WHERE t.kid = signing_keys.kid AND t.expires_at > ?)`,
		now.Add(-signingKeyGrace), now)
	var total int64
	for _, st := range steps {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			res := s.w.WithContext(ctx).Exec(st.sql, now, batch)
			if res.Error != nil {
				return total, fmt.Errorf("purge %s: %w", st.name, res.Error)
			}
			total += res.RowsAffected
			if res.RowsAffected < int64(batch) {
				break
			}
		}
	}
	if keys.Error != nil {
		return total, fmt.Errorf("purge retired signing keys: %w", keys.Error)
	}
	return total + keys.RowsAffected, nil
}

// signingKeyGrace is how long a retired signing key is kept even with no
// live token, covering replicas whose key cache has not yet seen the
// rotation.
const signingKeyGrace = 10 * time.Minute
