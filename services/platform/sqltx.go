package platform

import (
	"context"
	"database/sql"
	"time"
)

// WriteTxTimeout bounds one write transaction run by InTx.
const WriteTxTimeout = 5 * time.Second

// InTx runs fn in a transaction on db and commits it when fn returns nil, else rolls it back.
//
// The transaction runs detached from ctx's cancellation and bounded by WriteTxTimeout instead: when a
// context ends in the middle of a statement, modernc.org/sqlite interrupts it, and an interrupted
// write transaction can leave its connection holding SQLite's write lock, so that every later writer
// waits out busy_timeout and fails (found by fuzzing with 1 ms caller deadlines). A caller whose
// context has already ended gets its error before anything is written; one whose deadline passes
// during the transaction sees it complete, which is what an idempotent retry expects anyway.
func InTx(ctx context.Context, db *sql.DB, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, cancel := WriteContext(ctx)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// WriteContext is the context a write transaction runs under (see InTx): ctx itself when it has
// already ended, so the transaction fails before it starts; otherwise ctx without its cancellation,
// bounded by WriteTxTimeout. Use it for every statement of the transaction.
func WriteContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), WriteTxTimeout)
}
