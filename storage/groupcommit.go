package storage

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"sync"
	"time"
)

// groupCommit stores the tokens of concurrent token requests in one SQLite
// transaction. SQLite has one writer, and each commit rewrites every page
// the transaction touched into the WAL: a token alone dirties a page of
// the table and one of each index, so a commit per token writes several
// times more than a commit per batch, whose tokens share most of those
// pages. Each token is still checked against its key pair by its own
// statement inside the transaction, and no caller hears of its token
// before the transaction holding it has committed.
//
// With one request at a time a batch is one token, and nothing waits for
// company: before each batch the committer only lets the goroutines that
// are already runnable go first, so those about to ask join it.
type groupCommit struct {
	s     *Store
	db    *sql.DB
	queue chan *pendingToken
	quit  chan struct{}
	done  chan struct{}
	stop  sync.Once
}

type pendingToken struct {
	ctx  context.Context
	t    *tokenInsert
	errc chan error // buffered: the committer never blocks on a caller
}

// maxBatch bounds a transaction, so one batch never holds the writer for
// long while an admin change waits.
const maxBatch = 128

func newGroupCommit(s *Store, db *sql.DB) *groupCommit {
	g := &groupCommit{s: s, db: db, queue: make(chan *pendingToken, maxBatch), quit: make(chan struct{}), done: make(chan struct{})}
	go g.run()
	return g
}

// insert queues t and waits until its batch has committed or failed, or
// ctx ends.
func (g *groupCommit) insert(ctx context.Context, t *tokenInsert) error {
	p := &pendingToken{ctx: ctx, t: t, errc: make(chan error, 1)}
	select {
	case g.queue <- p:
	case <-g.quit:
		return errors.New("the store is closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.errc:
		return err
	case <-g.done:
		select {
		case err := <-p.errc:
			return err
		default:
			return errors.New("the store is closed")
		}
	case <-ctx.Done():
		// The token may still be stored; unreturned, it is never used
		// and the janitor removes it when it expires.
		return ctx.Err()
	}
}

func (g *groupCommit) run() {
	defer close(g.done)
	batch := make([]*pendingToken, 0, maxBatch)
	for {
		select {
		case p := <-g.queue:
			batch = append(batch[:0], p)
		case <-g.quit:
			return
		}
		// Handing a request over wakes this goroutine at once, ahead of
		// the handlers about to queue theirs: yield, so they do, and the
		// batch takes them all.
		runtime.Gosched()
	more:
		for len(batch) < maxBatch {
			select {
			case p := <-g.queue:
				batch = append(batch, p)
			default:
				break more
			}
		}
		g.commit(batch)
	}
}

// commit writes batch in one transaction and tells every caller the
// outcome. A caller that has given up is left out, so its token is not
// stored for nobody.
func (g *groupCommit) commit(batch []*pendingToken) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Prepared while the writer connection is free; a failure here (no
	// tables yet) shows up again, as the statements' own errors.
	_, _ = g.s.prepared(ctx, g.db, g.s.insertSQL)
	_, _ = g.s.prepared(ctx, g.db, touchKeyPairSQL)
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		for _, p := range batch {
			p.errc <- err
		}
		return
	}
	errs := make([]error, len(batch))
	for i, p := range batch {
		if p.ctx.Err() != nil {
			errs[i] = p.ctx.Err()
			continue
		}
		errs[i] = g.s.insertToken(ctx, tx, p.t)
	}
	if err := tx.Commit(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	for i, p := range batch {
		p.errc <- errs[i]
	}
}

// close stops the committer after the batch in progress; closing again
// does nothing.
func (g *groupCommit) close() {
	g.stop.Do(func() { close(g.quit) })
	<-g.done
}
