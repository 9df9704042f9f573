package storage

import (
	"context"
	"fmt"
)

// Purge deletes what can never be used again: expired access tokens, key
// pairs past their grace deadline (with the tokens issued to them) and
// expired admin tokens. It works in batches of at most batch rows, each in
// its own short transaction, so a large backlog never holds the writer for
// long. It returns how many rows it deleted.
func (s *Store) Purge(ctx context.Context, batch int) (int64, error) {
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
	return total, nil
}
