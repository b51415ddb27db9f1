package catalog

import "time"

// Product is an item for sale. Stock is the quantity available to reserve.
type Product struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Stock      int64  `json:"stock"`
}

// ReservationStatus is the life cycle of a stock reservation: held → committed | released | expired.
type ReservationStatus string

const (
	ReservationHeld      ReservationStatus = "held"
	ReservationCommitted ReservationStatus = "committed"
	ReservationReleased  ReservationStatus = "released"
	ReservationExpired   ReservationStatus = "expired"
)

// Item is a quantity of one product.
type Item struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// ReservedItem is an item held by a reservation, priced when it was reserved.
type ReservedItem struct {
	ProductID      string `json:"product_id"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Reservation holds stock for one order until it is committed, released or expires.
type Reservation struct {
	ID         string            `json:"id"`
	OrderID    string            `json:"order_id"`
	Status     ReservationStatus `json:"status"`
	Items      []ReservedItem    `json:"items"`
	TotalCents int64             `json:"total_cents"`
	ExpiresAt  time.Time         `json:"expires_at"`
}

// ReserveRequest asks to hold stock for an order. Reserving is idempotent per OrderID.
type ReserveRequest struct {
	OrderID string `json:"order_id"`
	Items   []Item `json:"items"`
}

// ListProductsResponse is the answer of GET /products.
type ListProductsResponse struct {
	Products []Product `json:"products"`
}
