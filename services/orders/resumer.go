package orders

import (
	"context"
	"errors"
	"sync"
	"time"
)

const (
	// resumeBatch bounds the orders one pass picks up; the next pass takes the rest.
	resumeBatch = 100
	// resumeParallelism bounds the orders driven at once, so a slow dependency does not stall a pass
	// behind one order nor flood the dependency.
	resumeParallelism = 4
)

// resumer drives the orders no live request is driving: orders left mid-saga by a crash, and orders
// waiting in compensating for a dependency to come back.
type resumer struct {
	saga     *saga
	now      func() time.Time
	interval time.Duration
	// grace leaves an order alone for a while after its last update, so the resumer does not race a
	// request that has just stored a step (or another instance shutting down).
	grace time.Duration
}

// loop runs a pass at once, closes firstPass, and then runs a pass every interval until ctx ends.
func (r *resumer) loop(ctx context.Context, firstPass chan<- struct{}) {
	r.pass(ctx)
	close(firstPass)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.pass(ctx)
	}
}

// pass drives every open order last updated more than grace ago that no one else is driving.
func (r *resumer) pass(ctx context.Context) {
	now := r.now()
	cutoff := now.Add(-r.grace)
	ids, err := r.saga.store.listOpen(ctx, cutoff, now, resumeBatch)
	if err != nil {
		if ctx.Err() == nil {
			r.saga.logger.ErrorContext(ctx, "resume: list open orders", "err", err)
		}
		return
	}
	due := func(o record) bool { return !o.UpdatedAt.After(cutoff) && !o.RetryAt.After(now) }
	slots := make(chan struct{}, resumeParallelism)
	var wg sync.WaitGroup
	for _, id := range ids {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case slots <- struct{}{}:
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				o, err := r.saga.run(ctx, id, due)
				switch {
				case err != nil && !errors.Is(err, errStopping) && ctx.Err() == nil:
					r.saga.logger.ErrorContext(ctx, "resume order", "order_id", id, "err", err)
				case err == nil:
					r.saga.logger.DebugContext(ctx, "resumed order", "order_id", id, "status", o.Status)
				}
			}()
		}
	}
	wg.Wait()
}
