// Command demo walks one customer through the shop's public API (the gateway) and prints each step:
// token, catalog, an order that is confirmed, its aggregate details, and an order that is declined. It
// exits non-zero when the shop does not behave as documented, so `make lab` fails loudly.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	gateway := flag.String("gateway", "http://127.0.0.1:8080", "gateway base URL")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for the gateway to become ready")
	flag.Parse()
	if err := run(context.Background(), strings.TrimSuffix(*gateway, "/"), *wait); err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("demo: OK")
}

type shop struct {
	base  string
	token string
	http  *http.Client
}

func run(ctx context.Context, base string, wait time.Duration) error {
	s := &shop{base: base, http: &http.Client{Timeout: 15 * time.Second}}
	step("waiting for the gateway at %s (up to %s)", base, wait)
	if err := s.waitReady(ctx, wait); err != nil {
		return err
	}

	step("1. get a dev token for customer \"demo-alice\"")
	var tok struct {
		Token string `json:"token"`
	}
	if err := s.call(ctx, "POST", "/api/token", "", map[string]any{"subject": "demo-alice"}, http.StatusOK, &tok); err != nil {
		return err
	}
	s.token = tok.Token
	detail("token: %s…", tok.Token[:min(24, len(tok.Token))])

	step("2. browse the catalog")
	var list struct {
		Products []struct {
			ID         string `json:"id"`
			Name       string `json:"name"`
			PriceCents int64  `json:"price_cents"`
			Stock      int64  `json:"stock"`
		} `json:"products"`
	}
	if err := s.call(ctx, "GET", "/api/products", "", nil, http.StatusOK, &list); err != nil {
		return err
	}
	if len(list.Products) == 0 {
		return errors.New("the catalog is empty")
	}
	for _, p := range list.Products {
		detail("%-14s %-28s %8.2f  stock %d", p.ID, p.Name, float64(p.PriceCents)/100, p.Stock)
	}
	product := list.Products[0]
	for _, p := range list.Products {
		if p.Stock > 0 {
			product = p
			break
		}
	}

	step("3. place an order for 2 × %s (saga: reserve stock → charge → confirm)", product.ID)
	var order struct {
		ID         string `json:"id"`
		Status     string `json:"status"`
		TotalCents int64  `json:"total_cents"`
		PaymentID  string `json:"payment_id"`
		Reason     string `json:"reason"`
	}
	items := []map[string]any{{"product_id": product.ID, "quantity": 2}}
	key := platform.NewID()
	if err := s.call(ctx, "POST", "/api/orders", key, map[string]any{"items": items}, http.StatusCreated, &order); err != nil {
		return err
	}
	detail("order %s: %s, total %.2f, payment %s", order.ID, order.Status, float64(order.TotalCents)/100, order.PaymentID)
	if order.Status != "confirmed" {
		return fmt.Errorf("order %s ended %q (%s), want confirmed", order.ID, order.Status, order.Reason)
	}

	step("4. send the same order again with the same Idempotency-Key: the shop must not charge twice")
	var again struct {
		ID string `json:"id"`
	}
	if err := s.call(ctx, "POST", "/api/orders", key, map[string]any{"items": items}, http.StatusOK, &again); err != nil {
		return err
	}
	if again.ID != order.ID {
		return fmt.Errorf("a repeated Idempotency-Key made a second order %s", again.ID)
	}
	detail("same order %s", again.ID)

	step("5. read the order's details (one aggregate call: order, products, payment)")
	var details map[string]any
	if err := s.call(ctx, "GET", "/api/orders/"+order.ID+"/details", "", nil, http.StatusOK, &details); err != nil {
		return err
	}
	pretty, _ := json.MarshalIndent(details, "      ", "  ")
	detail("%s", pretty)

	step("6. pay with the test card that is always declined: the order is rejected and stock released")
	var declined struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	body := map[string]any{"items": items, "card_number": "4000000000000002"}
	if err := s.call(ctx, "POST", "/api/orders", platform.NewID(), body, http.StatusCreated, &declined); err != nil {
		return err
	}
	detail("order %s: %s (%s)", declined.ID, declined.Status, declined.Reason)
	if declined.Status != "rejected" {
		return fmt.Errorf("declined order ended %q, want rejected", declined.Status)
	}

	step("7. bad input gets a clear 4xx: an order with quantity 0")
	var apiErr map[string]any
	bad := map[string]any{"items": []map[string]any{{"product_id": product.ID, "quantity": 0}}}
	if err := s.call(ctx, "POST", "/api/orders", platform.NewID(), bad, http.StatusBadRequest, &apiErr); err != nil {
		return err
	}
	detail("%v", apiErr["error"])
	return nil
}

func (s *shop) waitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		resp, err := s.http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("readyz answered %s", resp.Status)
			}
			return fmt.Errorf("gateway not ready after %s: %w", wait, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// call sends one request and decodes the answer, which must have status want.
func (s *shop) call(ctx context.Context, method, path, idempotencyKey string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if idempotencyKey != "" {
		req.Header.Set(platform.HeaderIdempotencyKey, idempotencyKey)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	detail("%s %s → %d (request id %s)", method, path, resp.StatusCode, resp.Header.Get(platform.HeaderRequestID))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s answered %d, want %d: %s", method, path, resp.StatusCode, want, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func step(format string, args ...any)   { fmt.Printf("\n==> "+format+"\n", args...) }
func detail(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
