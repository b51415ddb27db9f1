package notifications

import (
	"context"

	"github.com/go-kit/kit/endpoint"
)

// Set holds one go-kit endpoint per operation of the Service.
type Set struct {
	ListNotificationsEndpoint endpoint.Endpoint
}

// NewSet builds the endpoint Set of svc.
func NewSet(svc Service) Set {
	return Set{ListNotificationsEndpoint: makeListNotificationsEndpoint(svc)}
}

type listNotificationsRequest struct{ CustomerID string }

func makeListNotificationsEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		list, err := svc.ListNotifications(ctx, request.(listNotificationsRequest).CustomerID)
		if err != nil {
			return nil, err
		}
		return ListNotificationsResponse{Notifications: list}, nil
	}
}
