package catalog_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/platform"
)

// TestCallerDeadlinesMidWriteNeverWedgeTheStore: callers whose deadlines run out in the middle of a
// write transaction must not leave the database locked for the writers after them. (Fuzzing found it:
// with the request's context on the transaction, an interrupted write kept SQLite's write lock, and
// every later write waited out busy_timeout and failed.)
func TestCallerDeadlinesMidWriteNeverWedgeTheStore(t *testing.T) {
	r := start(t, nil)
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := range 400 {
		func() {
			body := fmt.Sprintf(`{"order_id":"o-%d","items":[{"product_id":"p-mug","quantity":1}]}`, i)
			req, _ := http.NewRequest("POST", r.url+"/reservations", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(platform.HeaderDeadline, fmt.Sprint(1+i%3))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("reserve %d: %v", i, err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 && resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("reserve %d with a %s ms deadline: %s", i, req.Header.Get(platform.HeaderDeadline), resp.Status)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := r.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-after", Items: []catalog.Item{{ProductID: "p-mug", Quantity: 1}}})
	if err != nil || res.Status != catalog.ReservationHeld {
		t.Fatalf("a write after the interrupted ones: %+v, %v", res, err)
	}
}
