package notifications

import "time"

// Notification is what a customer is told about one order event. There is exactly one per event: its
// id is the event's id.
type Notification struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	OrderID    string    `json:"order_id"`
	EventType  string    `json:"event_type"`
	Message    string    `json:"message"`
	CreatedAt  time.Time `json:"created_at"` // when the event happened
}

// ListNotificationsResponse is the answer of GET /notifications?customer_id=….
type ListNotificationsResponse struct {
	Notifications []Notification `json:"notifications"`
}
