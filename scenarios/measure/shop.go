package measure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
)

// Request kinds of the shop's mix.
const (
	KindBrowse     = "browse"      // GET /api/products
	KindProduct    = "product"     // GET /api/products/{id}
	KindPlaceOrder = "place_order" // POST /api/orders
	KindReadOrders = "read_orders" // GET /api/orders
	KindDetails    = "details"     // GET /api/orders/{id}/details
)

// Shop talks to the shop through the gateway as a set of customers, and keeps the ledger of every order
// it tried to place.
type Shop struct {
	BaseURL   string
	Customers []Customer
	Products  []catalog.Product // what the mix buys (in stock at the start)
	Client    *http.Client

	mu     sync.Mutex
	placed map[string]*Placement     // by idempotency key
	known  []string                  // acknowledged order ids, for reads
	final  map[string][]orders.Order // by customer, as Account last read them
}

// Customer is one dev-token subject.
type Customer struct {
	ID    string
	Token string
}

// Placement is one order the load tried to place (retries of the same attempt share its key).
type Placement struct {
	Key      string `json:"key"`
	Customer string `json:"customer"`
	// Acked is set when the gateway answered 2xx with an order: the shop promised that order exists.
	Acked   bool   `json:"acked"`
	OrderID string `json:"order_id,omitempty"`
	Status  string `json:"status,omitempty"`
	// Sent is when the request was built (its due time, give or take the generator's lag).
	Sent time.Time `json:"sent"`
}

// NewShop gets a token for each of n customers named prefix-0 … and reads the catalog.
func NewShop(ctx context.Context, baseURL, prefix string, n int) (*Shop, error) {
	s := &Shop{BaseURL: strings.TrimSuffix(baseURL, "/"), Client: loadtest.NewClient(256), placed: map[string]*Placement{}}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		var tok struct {
			Token string `json:"token"`
		}
		if err := s.do(ctx, "", http.MethodPost, "/api/token", map[string]string{"subject": id}, &tok); err != nil {
			return nil, fmt.Errorf("token for %s: %w", id, err)
		}
		s.Customers = append(s.Customers, Customer{ID: id, Token: tok.Token})
	}
	products, err := s.ProductStock(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range products {
		if p.Stock > 1000 {
			s.Products = append(s.Products, p)
		}
	}
	if len(s.Products) == 0 {
		return nil, fmt.Errorf("no product in stock")
	}
	return s, nil
}

// do sends one JSON request as token's customer and decodes a 2xx answer into out. The harness's own
// reads wait out the gateway's rate limit (429) rather than count it against the shop.
func (s *Shop) do(ctx context.Context, token, method, path string, body, out any) error {
	for attempt := 0; ; attempt++ {
		err := s.doOnce(ctx, token, method, path, body, out)
		if err == nil || !errors.Is(err, errRateLimited) || attempt == 20 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

var errRateLimited = errors.New("rate limited")

func (s *Shop) doOnce(ctx context.Context, token, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.BaseURL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%s %s: %w", method, path, errRateLimited)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// ProductStock reads every product and its stock.
func (s *Shop) ProductStock(ctx context.Context) ([]catalog.Product, error) {
	var list catalog.ListProductsResponse
	if err := s.do(ctx, s.anyToken(), http.MethodGet, "/api/products", nil, &list); err != nil {
		return nil, err
	}
	return list.Products, nil
}

func (s *Shop) anyToken() string {
	if len(s.Customers) == 0 {
		return ""
	}
	return s.Customers[0].Token
}

// Kinds returns the request kinds of the shop; keyPrefix makes idempotency keys unique to one run.
// customers, when given, are the indexes of the customers that send them (default: every customer).
func (s *Shop) Kinds(keyPrefix string, customers ...int) map[string]loadtest.Kind {
	customer := s.customer
	if len(customers) > 0 {
		customer = func(seq uint64) Customer { return s.Customers[customers[int(seq%uint64(len(customers)))]] }
	}
	get := func(path func(seq uint64) string) func(ctx context.Context, seq uint64) (*http.Request, error) {
		return func(ctx context.Context, seq uint64) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.BaseURL+path(seq), nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+customer(seq).Token)
			return req, nil
		}
	}
	return map[string]loadtest.Kind{
		KindBrowse: {Name: KindBrowse, Weight: 1, Build: get(func(uint64) string { return "/api/products" })},
		KindProduct: {Name: KindProduct, Weight: 1, Build: get(func(seq uint64) string {
			return "/api/products/" + s.Products[int(seq/7)%len(s.Products)].ID
		})},
		KindReadOrders: {Name: KindReadOrders, Weight: 1, Build: get(func(uint64) string { return "/api/orders" })},
		KindDetails: {Name: KindDetails, Weight: 1, Build: func(ctx context.Context, seq uint64) (*http.Request, error) {
			id, token := s.knownOrder(seq)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.BaseURL+"/api/orders/"+id+"/details", nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			return req, nil
		}, Classify: loadtest.ExpectStatus(http.StatusNotFound)},
		KindPlaceOrder: {Name: KindPlaceOrder, Weight: 1,
			Build: func(ctx context.Context, seq uint64) (*http.Request, error) {
				c := customer(seq)
				key := fmt.Sprintf("%s-%d", keyPrefix, seq)
				p := s.Products[int(seq/3)%len(s.Products)]
				body, _ := json.Marshal(map[string]any{"items": []orders.Item{{ProductID: p.ID, Quantity: 1 + int64(seq%2)}}})
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.BaseURL+"/api/orders", bytes.NewReader(body))
				if err != nil {
					return nil, err
				}
				req.Header.Set("Authorization", "Bearer "+c.Token)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", key)
				s.mu.Lock()
				s.placed[key] = &Placement{Key: key, Customer: c.ID, Sent: time.Now()}
				s.mu.Unlock()
				return req, nil
			},
			Classify: loadtest.ExpectStatus(http.StatusConflict), // out of stock is a business answer
			OnResponse: func(resp *http.Response, body []byte) {
				var o orders.Order
				if json.Unmarshal(body, &o) != nil || o.ID == "" {
					return
				}
				key := resp.Request.Header.Get("Idempotency-Key")
				s.mu.Lock()
				defer s.mu.Unlock()
				if p := s.placed[key]; p != nil {
					p.Acked, p.OrderID, p.Status = true, o.ID, string(o.Status)
					s.known = append(s.known, o.ID+" "+p.Customer)
				}
			}},
	}
}

func (s *Shop) customer(seq uint64) Customer { return s.Customers[int(seq%uint64(len(s.Customers)))] }

// knownOrder picks an acknowledged order and its customer's token (an unknown id before any exists).
func (s *Shop) knownOrder(seq uint64) (id, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.known) == 0 {
		return "none", s.customer(seq).Token
	}
	id, cust, _ := strings.Cut(s.known[int(seq)%len(s.known)], " ")
	for _, c := range s.Customers {
		if c.ID == cust {
			return id, c.Token
		}
	}
	return id, s.customer(seq).Token
}

// Placements returns the ledger.
func (s *Shop) Placements() []Placement {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Placement, 0, len(s.placed))
	for _, p := range s.placed {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// ConfirmedShare is, per second since start, the share of the orders placed in that second that the
// gateway acknowledged as confirmed: what the customer came for, which a 2xx alone does not say (a
// saga that compensated answers 201 with a cancelled order). NaN for a second without orders.
func (s *Shop) ConfirmedShare(start time.Time, seconds int) []float64 {
	placed, confirmed := make([]int, seconds), make([]int, seconds)
	for _, p := range s.Placements() {
		t := int(p.Sent.Sub(start) / time.Second)
		if t < 0 || t >= seconds {
			continue
		}
		placed[t]++
		if p.Acked && p.Status == string(orders.StatusConfirmed) {
			confirmed[t]++
		}
	}
	out := make([]float64, seconds)
	for i := range out {
		out[i] = math.NaN()
		if placed[i] > 0 {
			out[i] = float64(confirmed[i]) / float64(placed[i])
		}
	}
	return out
}

// Accounting is the data-loss verdict after recovery: every acknowledged order is in a terminal state
// exactly once, and stock and payments agree with the orders.
type Accounting struct {
	Attempted    int `json:"attempted"`    // distinct idempotency keys sent
	Acknowledged int `json:"acknowledged"` // answered 2xx with an order
	Orders       int `json:"orders"`       // orders the customers have, acknowledged or not
	Confirmed    int `json:"confirmed"`
	Rejected     int `json:"rejected"`
	Cancelled    int `json:"cancelled"`
	// Lost: acknowledged but absent; Duplicated: more orders than keys, or one id listed twice; Stuck:
	// not terminal when the settle time ran out.
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	Stuck      int `json:"stuck"`
	// PaymentMismatches: a confirmed order without a captured payment of its total, or an order that
	// did not go through whose payment is still captured. StockMismatches: products whose stock moved by
	// other than the quantities of confirmed orders.
	PaymentMismatches int      `json:"payment_mismatches"`
	StockMismatches   int      `json:"stock_mismatches"`
	Problems          []string `json:"problems,omitempty"`
	SettleSeconds     float64  `json:"settle_s"`
}

// Broken counts everything that is wrong.
func (a Accounting) Broken() int {
	return a.Lost + a.Duplicated + a.Stuck + a.PaymentMismatches + a.StockMismatches
}

func (a *Accounting) problem(format string, args ...any) {
	if len(a.Problems) < 20 {
		a.Problems = append(a.Problems, fmt.Sprintf(format, args...))
	}
}

// Account waits up to settle for every order of the shop's customers to reach a terminal state, then
// checks the ledger, the payments and the stock (stockBefore: the stock when the load began).
func (s *Shop) Account(ctx context.Context, stockBefore []catalog.Product, settle time.Duration) (Accounting, error) {
	var a Accounting
	placed := s.Placements()
	a.Attempted = len(placed)
	keysPer := map[string]int{}
	for _, p := range placed {
		keysPer[p.Customer]++
		if p.Acked {
			a.Acknowledged++
		}
	}
	begin := time.Now()
	var all map[string][]orders.Order
	for {
		var err error
		all, err = s.listAll(ctx)
		if err == nil && countStuck(all) == 0 {
			break
		}
		if time.Since(begin) > settle {
			if err != nil {
				return a, fmt.Errorf("list orders: %w", err)
			}
			break
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	a.SettleSeconds = time.Since(begin).Seconds()
	s.mu.Lock()
	s.final = all
	s.mu.Unlock()

	byID := map[string]orders.Order{}
	var confirmed []orders.Order
	var settled []orders.Order
	for cust, list := range all {
		if n := len(list) - keysPer[cust]; n > 0 {
			a.Duplicated += n
			a.problem("%s has %d orders for %d idempotency keys", cust, len(list), keysPer[cust])
		}
		for _, o := range list {
			if _, dup := byID[o.ID]; dup {
				a.Duplicated++
				a.problem("order %s listed twice", o.ID)
			}
			byID[o.ID] = o
			switch o.Status {
			case orders.StatusConfirmed:
				a.Confirmed++
				confirmed = append(confirmed, o)
			case orders.StatusRejected:
				a.Rejected++
			case orders.StatusCancelled:
				a.Cancelled++
			default:
				a.Stuck++
				a.problem("order %s still %s", o.ID, o.Status)
			}
			if o.Status.Terminal() && o.PaymentID != "" {
				settled = append(settled, o)
			}
		}
	}
	a.Orders = len(byID)
	for _, p := range placed {
		if p.Acked {
			if _, ok := byID[p.OrderID]; !ok {
				a.Lost++
				a.problem("acknowledged order %s (key %s) is missing", p.OrderID, p.Key)
			}
		}
	}
	a.PaymentMismatches = s.checkPayments(ctx, settled, &a)

	after, err := s.ProductStock(ctx)
	if err != nil {
		return a, fmt.Errorf("read stock: %w", err)
	}
	sold := map[string]int64{}
	for _, o := range confirmed {
		for _, it := range o.Items {
			sold[it.ProductID] += it.Quantity
		}
	}
	now := map[string]int64{}
	for _, p := range after {
		now[p.ID] = p.Stock
	}
	for _, p := range stockBefore {
		if moved := p.Stock - now[p.ID]; moved != sold[p.ID] {
			a.StockMismatches++
			a.problem("stock of %s fell by %d but confirmed orders hold %d", p.ID, moved, sold[p.ID])
		}
	}
	return a, nil
}

func countStuck(all map[string][]orders.Order) int {
	n := 0
	for _, list := range all {
		for _, o := range list {
			if !o.Status.Terminal() {
				n++
			}
		}
	}
	return n
}

func (s *Shop) listAll(ctx context.Context) (map[string][]orders.Order, error) {
	out := map[string][]orders.Order{}
	for _, c := range s.Customers {
		var list orders.ListOrdersResponse
		if err := s.do(ctx, c.Token, http.MethodGet, "/api/orders", nil, &list); err != nil {
			return nil, err
		}
		out[c.ID] = list.Orders
	}
	return out, nil
}

// checkPayments reads the payment of every settled order that has one.
func (s *Shop) checkPayments(ctx context.Context, settled []orders.Order, a *Accounting) int {
	tokens := map[string]string{}
	for _, c := range s.Customers {
		tokens[c.ID] = c.Token
	}
	var mu sync.Mutex
	bad := 0
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, o := range settled {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var p payments.Payment
			err := s.do(ctx, tokens[o.CustomerID], http.MethodGet, "/api/payments/"+o.PaymentID, nil, &p)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				bad++
				a.problem("payment %s of order %s: %v", o.PaymentID, o.ID, err)
			case o.Status == orders.StatusConfirmed && (p.Status != payments.StatusCaptured || p.AmountCents != o.TotalCents):
				bad++
				a.problem("confirmed order %s: payment %s is %s of %d cents, total %d", o.ID, p.ID, p.Status, p.AmountCents, o.TotalCents)
			case o.Status != orders.StatusConfirmed && p.Status == payments.StatusCaptured:
				bad++
				a.problem("%s order %s: payment %s still captured", o.Status, o.ID, p.ID)
			}
		})
	}
	wg.Wait()
	return bad
}

// Outcomes counts the orders of the shop's customers created between from and to (answered or not),
// how many of them ended confirmed, and how many were charged (the order holds a payment), as Account
// last read them.
func (s *Shop) Outcomes(from, to time.Time) (created, confirmed, charged int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, list := range s.final {
		for _, o := range list {
			if o.CreatedAt.Before(from) || !o.CreatedAt.Before(to) {
				continue
			}
			created++
			if o.Status == orders.StatusConfirmed {
				confirmed++
			}
			if o.PaymentID != "" {
				charged++
			}
		}
	}
	return created, confirmed, charged
}
