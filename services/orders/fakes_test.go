package orders

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// This file holds in-memory fakes of catalog and payments that keep the real services' rules
// (idempotent reserve per order, charge per key, release/commit/refund semantics) and can be made to
// fail: before a call takes effect, after it took effect (the answer is lost), persistently (down), or
// by blocking until the caller gives up. They are exported so the external test package can use them.

// Fault kinds.
type FaultKind int

const (
	// FailBefore: the call fails without taking effect (connection refused).
	FailBefore FaultKind = iota + 1
	// FailAfter: the call takes effect, then the answer is lost (a 503 from a proxy, a timeout).
	FailAfter
	// Block: the call waits until its context ends.
	Block
	// Late (reserve and charge only): the call fails at once and takes effect later, when Land is
	// called, as a request delayed in the network would.
	Late
)

var errConnRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func errLostAnswer(op string) error {
	return platform.Errorf(http.StatusServiceUnavailable, "upstream_503", "%s: the answer was lost", op)
}

// Faults scripts failures per operation name (reserve, commit, release, charge, refund, list).
type Faults struct {
	mu    sync.Mutex
	next  map[string][]FaultKind
	down  map[string]bool
	calls map[string]int
}

func newFaults() *Faults {
	return &Faults{next: map[string][]FaultKind{}, down: map[string]bool{}, calls: map[string]int{}}
}

// FailNext makes the next calls of op fail with kinds, in order.
func (f *Faults) FailNext(op string, kinds ...FaultKind) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[op] = append(f.next[op], kinds...)
}

// SetDown makes every call of each op fail before taking effect until SetDown(false, …).
func (f *Faults) SetDown(down bool, ops ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range ops {
		f.down[op] = down
	}
}

// Calls reports how often op was called.
func (f *Faults) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// before is called at the start of each call: it returns the fault to apply to it, or 0.
func (f *Faults) before(ctx context.Context, op string) (FaultKind, error) {
	f.mu.Lock()
	f.calls[op]++
	var k FaultKind
	if f.down[op] {
		k = FailBefore
	} else if q := f.next[op]; len(q) > 0 {
		k, f.next[op] = q[0], q[1:]
	}
	f.mu.Unlock()
	switch k {
	case FailBefore:
		return k, errConnRefused
	case Block:
		<-ctx.Done()
		return k, ctx.Err()
	}
	return k, ctx.Err()
}

// FakeCatalog is an in-memory catalog.
type FakeCatalog struct {
	*Faults
	mu       sync.Mutex
	late     []catalog.ReserveRequest
	products map[string]catalog.Product
	byID     map[string]*catalog.Reservation
	byOrder  map[string]string
}

// NewFakeCatalog returns a catalog holding products.
func NewFakeCatalog(products ...catalog.Product) *FakeCatalog {
	c := &FakeCatalog{Faults: newFaults(), products: map[string]catalog.Product{},
		byID: map[string]*catalog.Reservation{}, byOrder: map[string]string{}}
	for _, p := range products {
		c.products[p.ID] = p
	}
	return c
}

func (c *FakeCatalog) Reserve(ctx context.Context, req catalog.ReserveRequest) (catalog.Reservation, error) {
	k, err := c.before(ctx, "reserve")
	if err != nil {
		return catalog.Reservation{}, err
	}
	c.mu.Lock()
	if k == Late {
		c.late = append(c.late, req)
		c.mu.Unlock()
		return catalog.Reservation{}, errLostAnswer("reserve")
	}
	res, err := c.reserveLocked(req)
	c.mu.Unlock()
	if err == nil && k == FailAfter {
		return catalog.Reservation{}, errLostAnswer("reserve")
	}
	return res, err
}

// Land applies the delayed reserve calls.
func (c *FakeCatalog) Land() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, req := range c.late {
		_, _ = c.reserveLocked(req)
	}
	c.late = nil
}

func (c *FakeCatalog) reserveLocked(req catalog.ReserveRequest) (catalog.Reservation, error) {
	if id, ok := c.byOrder[req.OrderID]; ok {
		return cloneReservation(c.byID[id]), nil
	}
	res := &catalog.Reservation{ID: platform.NewID(), OrderID: req.OrderID, Status: catalog.ReservationHeld,
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, it := range req.Items {
		p, ok := c.products[it.ProductID]
		if !ok {
			return catalog.Reservation{}, platform.NotFound("product %q not found", it.ProductID)
		}
		if p.Stock < it.Quantity {
			return catalog.Reservation{}, platform.Conflict("out_of_stock", "product %q has %d in stock", p.ID, p.Stock)
		}
		res.Items = append(res.Items, catalog.ReservedItem{ProductID: p.ID, Quantity: it.Quantity, UnitPriceCents: p.PriceCents})
		res.TotalCents += p.PriceCents * it.Quantity
	}
	for _, it := range res.Items {
		p := c.products[it.ProductID]
		p.Stock -= it.Quantity
		c.products[p.ID] = p
	}
	c.byID[res.ID], c.byOrder[req.OrderID] = res, res.ID
	return cloneReservation(res), nil
}

func (c *FakeCatalog) Commit(ctx context.Context, id string) (catalog.Reservation, error) {
	k, err := c.before(ctx, "commit")
	if err != nil {
		return catalog.Reservation{}, err
	}
	c.mu.Lock()
	res, err := c.commitLocked(id)
	c.mu.Unlock()
	if err == nil && k == FailAfter {
		return catalog.Reservation{}, errLostAnswer("commit")
	}
	return res, err
}

func (c *FakeCatalog) commitLocked(id string) (catalog.Reservation, error) {
	r, ok := c.byID[id]
	if !ok {
		return catalog.Reservation{}, platform.NotFound("reservation %q not found", id)
	}
	switch r.Status {
	case catalog.ReservationHeld:
		r.Status = catalog.ReservationCommitted
	case catalog.ReservationReleased, catalog.ReservationExpired:
		return catalog.Reservation{}, platform.Conflict("reservation_not_held", "reservation %s is %s", id, r.Status)
	}
	return cloneReservation(r), nil
}

func (c *FakeCatalog) Release(ctx context.Context, id string) (catalog.Reservation, error) {
	k, err := c.before(ctx, "release")
	if err != nil {
		return catalog.Reservation{}, err
	}
	c.mu.Lock()
	res, err := c.releaseLocked(id, catalog.ReservationReleased)
	c.mu.Unlock()
	if err == nil && k == FailAfter {
		return catalog.Reservation{}, errLostAnswer("release")
	}
	return res, err
}

func (c *FakeCatalog) releaseLocked(id string, to catalog.ReservationStatus) (catalog.Reservation, error) {
	r, ok := c.byID[id]
	if !ok {
		return catalog.Reservation{}, platform.NotFound("reservation %q not found", id)
	}
	switch r.Status {
	case catalog.ReservationHeld:
		r.Status = to
		for _, it := range r.Items {
			p := c.products[it.ProductID]
			p.Stock += it.Quantity
			c.products[p.ID] = p
		}
	case catalog.ReservationCommitted:
		return catalog.Reservation{}, platform.Conflict("reservation_committed", "reservation %s is committed", id)
	}
	return cloneReservation(r), nil
}

// Expire expires the reservation of orderID as the catalog's sweeper would.
func (c *FakeCatalog) Expire(t *testing.T, orderID string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.releaseLocked(c.byOrder[orderID], catalog.ReservationExpired); err != nil {
		t.Fatalf("expire reservation of %s: %v", orderID, err)
	}
}

// ReservationOf returns the reservation of orderID, if any.
func (c *FakeCatalog) ReservationOf(orderID string) (catalog.Reservation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.byOrder[orderID]
	if !ok {
		return catalog.Reservation{}, false
	}
	return cloneReservation(c.byID[id]), true
}

// Stock returns the available stock of a product.
func (c *FakeCatalog) Stock(productID string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.products[productID].Stock
}

// Held counts the reservations still held.
func (c *FakeCatalog) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.byID {
		if r.Status == catalog.ReservationHeld {
			n++
		}
	}
	return n
}

func cloneReservation(r *catalog.Reservation) catalog.Reservation {
	out := *r
	out.Items = append([]catalog.ReservedItem(nil), r.Items...)
	return out
}

// FakePayments is an in-memory payments service declining DecliningCard and amounts over LimitCents.
type FakePayments struct {
	*Faults
	LimitCents int64
	mu         sync.Mutex
	late       []payments.ChargeRequest
	byID       map[string]*payments.Payment
	byKey      map[string]string
	bodies     map[string]payments.ChargeRequest
	order      []string
}

func NewFakePayments() *FakePayments {
	return &FakePayments{Faults: newFaults(), LimitCents: 100000, byID: map[string]*payments.Payment{},
		byKey: map[string]string{}, bodies: map[string]payments.ChargeRequest{}}
}

func (p *FakePayments) Charge(ctx context.Context, req payments.ChargeRequest) (payments.Payment, error) {
	k, err := p.before(ctx, "charge")
	if err != nil {
		return payments.Payment{}, err
	}
	p.mu.Lock()
	if k == Late {
		p.late = append(p.late, req)
		p.mu.Unlock()
		return payments.Payment{}, errLostAnswer("charge")
	}
	pay, err := p.chargeLocked(req)
	p.mu.Unlock()
	if err == nil && k == FailAfter {
		return payments.Payment{}, errLostAnswer("charge")
	}
	return pay, err
}

// Land applies the delayed charge calls.
func (p *FakePayments) Land() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, req := range p.late {
		_, _ = p.chargeLocked(req)
	}
	p.late = nil
}

func (p *FakePayments) chargeLocked(req payments.ChargeRequest) (payments.Payment, error) {
	if req.IdempotencyKey == "" || req.AmountCents <= 0 {
		return payments.Payment{}, platform.BadRequest("invalid_argument", "bad charge %+v", req)
	}
	if id, ok := p.byKey[req.IdempotencyKey]; ok {
		if p.bodies[req.IdempotencyKey] != req {
			return payments.Payment{}, platform.Conflict("idempotency_key_reused", "key %s reused", req.IdempotencyKey)
		}
		return *p.byID[id], nil
	}
	pay := &payments.Payment{ID: platform.NewID(), OrderID: req.OrderID, AmountCents: req.AmountCents,
		Status: payments.StatusCaptured, CreatedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	switch {
	case req.AmountCents > p.LimitCents:
		pay.Status, pay.DeclineReason = payments.StatusDeclined, payments.DeclineAmountOverLimit
	case req.CardNumber == payments.DecliningCard:
		pay.Status, pay.DeclineReason = payments.StatusDeclined, payments.DeclineCardDeclined
	}
	p.byID[pay.ID], p.byKey[req.IdempotencyKey], p.bodies[req.IdempotencyKey] = pay, pay.ID, req
	p.order = append(p.order, pay.ID)
	return *pay, nil
}

func (p *FakePayments) Refund(ctx context.Context, id string) (payments.Payment, error) {
	k, err := p.before(ctx, "refund")
	if err != nil {
		return payments.Payment{}, err
	}
	p.mu.Lock()
	pay, err := p.refundLocked(id)
	p.mu.Unlock()
	if err == nil && k == FailAfter {
		return payments.Payment{}, errLostAnswer("refund")
	}
	return pay, err
}

func (p *FakePayments) refundLocked(id string) (payments.Payment, error) {
	pay, ok := p.byID[id]
	if !ok {
		return payments.Payment{}, platform.NotFound("payment %q not found", id)
	}
	switch pay.Status {
	case payments.StatusDeclined:
		return payments.Payment{}, platform.Conflict("not_refundable", "payment %s was declined", id)
	case payments.StatusCaptured:
		pay.Status = payments.StatusRefunded
	}
	return *pay, nil
}

func (p *FakePayments) ListByOrder(ctx context.Context, orderID string) ([]payments.Payment, error) {
	k, err := p.before(ctx, "list")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if k == FailAfter {
		return nil, errLostAnswer("list")
	}
	return p.byOrderLocked(orderID), nil
}

func (p *FakePayments) byOrderLocked(orderID string) []payments.Payment {
	list := []payments.Payment{}
	for _, id := range p.order {
		if pay := p.byID[id]; pay.OrderID == orderID {
			list = append(list, *pay)
		}
	}
	return list
}

// PaymentsOf returns every payment of orderID.
func (p *FakePayments) PaymentsOf(orderID string) []payments.Payment {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byOrderLocked(orderID)
}

// CheckConsistent fails t unless the fakes agree with o: a confirmed order has its reservation committed
// and exactly one captured payment of its total; a rejected or cancelled one holds no stock (nothing
// held or committed) and has no captured money.
func CheckConsistent(t *testing.T, o Order, cat *FakeCatalog, pay *FakePayments) {
	t.Helper()
	if err := consistency(o, cat, pay); err != nil {
		t.Error(err)
	}
}

func consistency(o Order, cat *FakeCatalog, pay *FakePayments) error {
	res, reserved := cat.ReservationOf(o.ID)
	var captured []payments.Payment
	for _, p := range pay.PaymentsOf(o.ID) {
		if p.Status == payments.StatusCaptured {
			captured = append(captured, p)
		}
	}
	switch o.Status {
	case StatusConfirmed:
		if !reserved || res.Status != catalog.ReservationCommitted || res.ID != o.ReservationID {
			return fmt.Errorf("confirmed order %s: reservation %+v (found %v), want %s committed", o.ID, res, reserved, o.ReservationID)
		}
		if len(captured) != 1 || captured[0].AmountCents != o.TotalCents || captured[0].ID != o.PaymentID {
			return fmt.Errorf("confirmed order %s (total %d, payment %s): captured payments %+v", o.ID, o.TotalCents, o.PaymentID, captured)
		}
	case StatusRejected, StatusCancelled:
		if reserved && (res.Status == catalog.ReservationHeld || res.Status == catalog.ReservationCommitted) {
			return fmt.Errorf("%s order %s: reservation is %s", o.Status, o.ID, res.Status)
		}
		if len(captured) != 0 {
			return fmt.Errorf("%s order %s: captured payments %+v", o.Status, o.ID, captured)
		}
	default:
		return fmt.Errorf("order %s is still %s (reason %q)", o.ID, o.Status, o.Reason)
	}
	return nil
}

// Clock is a settable clock for tests.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

func NewClock() *Clock { return &Clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// WithDependencies makes Open use cat and pay instead of the typed clients.
func WithDependencies(cfg Config, cat Catalog, pay Payments) Config {
	cfg.catalog, cfg.payments = cat, pay
	return cfg
}
