// Package deps pins the project's dependencies while the packages that use them are being written, so
// concurrent work shares one complete go.sum. Delete an import once real code uses that module.
package deps

import (
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/Shopify/toxiproxy/v2/client"
	_ "github.com/afex/hystrix-go/hystrix"
	_ "github.com/cenkalti/backoff/v5"
	_ "github.com/failsafe-go/failsafe-go"
	_ "github.com/go-kit/kit/endpoint"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/pact-foundation/pact-go/v2/consumer"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/common/expfmt"
	_ "github.com/sony/gobreaker/v2"
	_ "github.com/testcontainers/testcontainers-go"
	_ "golang.org/x/time/rate"
	_ "modernc.org/sqlite"
)
