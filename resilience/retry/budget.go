package retry

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-lab/lab/resilience/clock"
)

// BudgetConfig bounds retries to a share of recent traffic, as Finagle's and gRPC's retry budgets do:
// in any Window, retries <= Ratio × calls + MinPerSec × Window seconds. The ratio keeps a failing
// callee from receiving (1 + MaxAttempts) × its load; the floor lets a quiet caller still retry.
type BudgetConfig struct {
	Ratio     float64
	MinPerSec float64
	Window    time.Duration
}

func (c BudgetConfig) validate() error {
	if c.Ratio < 0 || c.MinPerSec < 0 || c.Window <= 0 {
		return fmt.Errorf("retry budget: ratio %v and min per second %v must not be negative, window %s must be > 0", c.Ratio, c.MinPerSec, c.Window)
	}
	return nil
}

const budgetBuckets = 10

// Budget counts calls and retries in a sliding window of ten buckets. Counting a call is one atomic
// add and no clock read (reading the clock is the dearest step of a call on some VMs): a timer moves
// the current bucket on every bucket width. Counters are atomics and a bucket is reset by whoever first
// sees it belong to a new period, so under contention at a bucket boundary an increment may be lost —
// the budget is approximate by design, never blocking.
type Budget struct {
	cfg     BudgetConfig
	clock   clock.Clock
	width   int64        // bucket width in ns
	current atomic.Int64 // the current period (clock UnixNano / width), moved by the timer
	buckets [budgetBuckets]budgetBucket

	mu      sync.Mutex
	timer   clock.Timer
	stopped bool
}

type budgetBucket struct {
	period  atomic.Int64
	calls   atomic.Int64
	retries atomic.Int64
}

// NewBudget returns an empty budget.
func NewBudget(cfg BudgetConfig, c clock.Clock) (*Budget, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	width := int64(cfg.Window) / budgetBuckets
	if width < 1 {
		width = 1
	}
	b := &Budget{cfg: cfg, clock: clock.OrReal(c), width: width}
	b.tick()
	return b, nil
}

// tick sets the current period from the clock and arms the timer for the next boundary.
func (b *Budget) tick() {
	now := b.clock.Now().UnixNano()
	b.current.Store(now / b.width)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stopped {
		b.timer = b.clock.AfterFunc(time.Duration(b.width-now%b.width), b.tick)
	}
}

// Stop stops the budget's timer; the budget then stays in its last period.
func (b *Budget) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	if b.timer != nil {
		b.timer.Stop()
	}
}

func (b *Budget) bucket(period int64) *budgetBucket {
	bk := &b.buckets[period%budgetBuckets]
	if seen := bk.period.Load(); seen != period && bk.period.CompareAndSwap(seen, period) {
		bk.calls.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

func (b *Budget) period() int64 { return b.current.Load() }

// Deposit records one call (its first attempt).
func (b *Budget) Deposit() { b.bucket(b.period()).calls.Add(1) }

// Withdraw spends one retry if the budget allows it and reports whether it did.
func (b *Budget) Withdraw() bool {
	p := b.period()
	if b.left(p) < 1 {
		return false
	}
	b.bucket(p).retries.Add(1)
	return true
}

// Left is how many retries the budget allows now.
func (b *Budget) Left() int { return b.left(b.period()) }

func (b *Budget) left(period int64) int {
	calls, retries := b.sums(period)
	allowed := b.cfg.Ratio*float64(calls) + b.cfg.MinPerSec*b.cfg.Window.Seconds()
	return int(math.Floor(allowed)) - int(retries)
}

// sums adds up the buckets of the window ending in period.
func (b *Budget) sums(period int64) (calls, retries int64) {
	for i := range b.buckets {
		bk := &b.buckets[i]
		if p := bk.period.Load(); p > period-budgetBuckets && p <= period {
			calls += bk.calls.Load()
			retries += bk.retries.Load()
		}
	}
	return calls, retries
}

// BudgetSnapshot is the budget's settings and the window's counts.
type BudgetSnapshot struct {
	Ratio     float64 `json:"ratio"`
	MinPerSec float64 `json:"min_per_sec"`
	Window    string  `json:"window"`
	Calls     int64   `json:"calls_in_window"`
	Retries   int64   `json:"retries_in_window"`
	Left      int     `json:"left"`
}

func (b *Budget) Snapshot() BudgetSnapshot {
	p := b.period()
	calls, retries := b.sums(p)
	return BudgetSnapshot{Ratio: b.cfg.Ratio, MinPerSec: b.cfg.MinPerSec, Window: b.cfg.Window.String(),
		Calls: calls, Retries: retries, Left: b.left(p)}
}
