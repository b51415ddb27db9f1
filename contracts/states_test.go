//go:build pact

package contracts

// Provider states: the names consumers put in their pacts and providers must have a handler for. A
// handler makes the state true through the provider's own API (or checks it, when it is built in) and
// may return values the verifier injects where the pact says fromProviderState (generated ids).
const (
	// catalog; the orders provider knows the two product states too, through its own catalog.
	stateProductExists       = "a product exists"          // → productId
	stateProductDoesNotExist = "a product does not exist"  // params: productId
	stateProductInStock      = "a product is in stock"     // params: quantity → productId
	stateProductOutOfStock   = "a product is out of stock" // → productId
	// The reservation states take an optional orderId and return reservationId and productId.
	stateReservationHeld      = "a reservation is held"
	stateReservationReleased  = "a reservation was released"
	stateReservationCommitted = "a reservation was committed"

	// payments
	stateOrderHasNoPayment   = "an order has no payment"    // params: orderId
	stateIssuerDeclinesCard  = "the issuer declines a card" // → cardNumber
	stateCapturedPayment     = "a captured payment exists"  // params: orderId, idempotencyKey? → paymentId
	stateDeclinedPayment     = "a declined payment exists"  // params: orderId → paymentId
	statePaymentDoesNotExist = "a payment does not exist"   // params: paymentId

	// orders
	stateCustomerHasOrder  = "a customer has an order" // params: customerId, quantity?, idempotencyKey? → orderId, productId
	stateOrderDoesNotExist = "an order does not exist" // params: orderId

	// orders, for its events: each places an order through the orders API and lets the saga end it;
	// the message handler then hands the verifier the event the orders relay published for it.
	stateOrderPlaced    = "an order was placed"    // any product in stock
	stateOrderConfirmed = "an order was confirmed" // a product in stock, everything answers
	stateOrderRejected  = "an order was rejected"  // a sold-out product
	stateOrderCancelled = "an order was cancelled" // the catalog fails the commit; compensation undoes the rest
)

// eventDescription is the description of the message of an event type in a message pact: what the
// consumer expects to receive and what the provider's message handler is looked up by.
func eventDescription(eventType string) string { return "an " + eventType + " event" }
