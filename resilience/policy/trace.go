package policy

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// EventWait: a call waited for a slot (bulkhead). Recorded on the call's span only, never sent to the
// hook: under contention it would fire on every call and flood the event log.
const EventWait EventKind = "wait"

// EmitContext is Emit for a decision about the call of ctx: the event also goes on the call's span (see
// Record), so a trace shows each retry, rejection or timeout where it happened.
func (o Options) EmitContext(ctx context.Context, e Event) {
	o.Emit(e)
	o.Record(ctx, e)
}

// Observed reports whether an event about the call of ctx goes anywhere: to a hook or onto a
// recording span. Rejection paths check it before building an event whose error text allocates.
func (o Options) Observed(ctx context.Context) bool {
	return o.Hook != nil || trace.SpanFromContext(ctx).IsRecording()
}

// Record adds e as an event named "<policy>.<kind>" (retry.retry, breaker.rejection, bulkhead.wait…)
// to the span of ctx when that span is recording; otherwise it costs one context lookup.
func (o Options) Record(ctx context.Context, e Event) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, attribute.String("resilience.downstream", o.Downstream))
	if e.Attempt > 0 {
		attrs = append(attrs, attribute.Int("resilience.attempt", e.Attempt))
	}
	if e.Delay > 0 {
		attrs = append(attrs, attribute.Float64("resilience.delay_ms", float64(e.Delay.Microseconds())/1000))
	}
	if e.From != "" || e.To != "" {
		attrs = append(attrs, attribute.String("resilience.from", e.From), attribute.String("resilience.to", e.To))
	}
	if e.Err != "" {
		attrs = append(attrs, attribute.String("error.message", e.Err))
	}
	span.AddEvent(e.Policy+"."+string(e.Kind), trace.WithAttributes(attrs...))
}
