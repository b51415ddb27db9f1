// Package interruptible replaces two of Toxiproxy's toxics, bandwidth and slicer, with versions whose
// every hand-off to the next stage of the link also listens for an interrupt.
//
// Upstream's hand their data on with a plain channel send. When the stage after them stalls (the
// client stopped reading, its socket buffer is full), the send blocks, and removing the toxic, which
// interrupts it and waits for it to stop, waits forever while holding the proxy's toxic lock: every
// later API call on that proxy, a reset included, times out after 25 s with a 503
// (Shopify/toxiproxy#558). The lab's catalog-bandwidth scenario hit it in a CI run and every scenario
// after it failed to reset. These keep the same type names and attributes, so clients see no change.
//
// An interrupt never waits on the next stage: what the toxic holds then is kept in the link's state
// (StatefulToxic) and passed on first when the toxic runs again, after an update, or flushed by Cleanup
// when it is removed. So an update (the lab's fault off: a pass-through rate or slice size) returns at
// once even on a link whose client has gone, whose writer waits for the very lock the update holds.
package interruptible

import (
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// Register puts these toxics in Toxiproxy's registry in place of its own bandwidth and slicer.
func Register() {
	toxics.Register("bandwidth", new(Bandwidth))
	toxics.Register("slicer", new(Slicer))
}

// flushWait bounds how long a removed toxic waits to hand on the data it holds (upstream's 5 s): data
// is not dropped unless the next stage is stalled for that long.
const flushWait = 5 * time.Second

// guarded holds a toxic's attributes, which Toxiproxy decodes an update into while the toxic's links run
// it. A run reads them once (get): an update interrupts it, and the next run reads the new ones.
type guarded[T any] struct {
	mu    sync.Mutex
	attrs T
}

// UnmarshalJSON sets the attributes present in b, keeping the others.
func (g *guarded[T]) UnmarshalJSON(b []byte) error {
	a := g.get()
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	g.mu.Lock()
	g.attrs = a
	g.mu.Unlock()
	return nil
}

// MarshalJSON writes the attributes as Toxiproxy's API shows them.
func (g *guarded[T]) MarshalJSON() ([]byte, error) { return json.Marshal(g.get()) }

func (g *guarded[T]) get() T {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.attrs
}

// held is a link's data a toxic took from its input and has not passed on yet, kept across an
// interrupt in the stub's State.
type held struct{ chunks []*stream.StreamChunk }

func newHeld() any { return new(held) }

func heldOf(stub *toxics.ToxicStub) *held {
	h, _ := stub.State.(*held)
	return h
}

// keep holds c (when it has data) for the toxic's next run. Without state (never, once registered) it
// falls back to flushing within flushWait.
func keep(stub *toxics.ToxicStub, c *stream.StreamChunk) {
	if len(c.Data) == 0 {
		return
	}
	if h := heldOf(stub); h != nil {
		h.chunks = append(h.chunks, c)
		return
	}
	_ = stub.WriteOutput(c, flushWait)
}

// resume passes on what an interrupted run held, in order; false means it was interrupted again (the
// rest is still held) and the toxic must stop.
func resume(stub *toxics.ToxicStub) bool {
	h := heldOf(stub)
	for h != nil && len(h.chunks) > 0 {
		c := h.chunks[0]
		select {
		case stub.Output <- c:
			h.chunks = h.chunks[1:]
		case <-stub.Interrupt:
			return false
		}
	}
	return true
}

// cleanup flushes what the toxic holds when Toxiproxy removes it, before the link's buffered input, as
// one chunk: a stalled link costs one flushWait, not one per piece.
func cleanup(stub *toxics.ToxicStub) {
	h := heldOf(stub)
	if h == nil || len(h.chunks) == 0 {
		return
	}
	all := &stream.StreamChunk{Timestamp: h.chunks[0].Timestamp}
	for _, c := range h.chunks {
		all.Data = append(all.Data, c.Data...)
	}
	h.chunks = nil
	_ = stub.WriteOutput(all, flushWait)
}

// send hands c to the next stage. Interrupted first, it keeps c and returns false: the toxic must stop.
func send(stub *toxics.ToxicStub, c *stream.StreamChunk) bool {
	select {
	case stub.Output <- c:
		return true
	case <-stub.Interrupt:
		keep(stub, c)
		return false
	}
}

// Bandwidth passes data through at rate KB/s (Toxiproxy's bandwidth toxic, attribute "rate"); a rate of
// 0 or less holds it until the toxic is changed or removed.
type Bandwidth struct {
	guarded[bandwidthAttrs]
}

type bandwidthAttrs struct {
	Rate int64 `json:"rate"` // KB/s
}

// NewState implements toxics.StatefulToxic: what an interrupted run held.
func (t *Bandwidth) NewState() any { return newHeld() }

// Cleanup implements toxics.CleanupToxic: on removal, what the toxic held goes on first.
func (t *Bandwidth) Cleanup(stub *toxics.ToxicStub) { cleanup(stub) }

// Pipe sends each chunk once the rate allows, in pieces of at most 100 ms worth of data.
func (t *Bandwidth) Pipe(stub *toxics.ToxicStub) {
	if !resume(stub) {
		return
	}
	rate := t.get().Rate
	var owed time.Duration // sending time the rate still asks for (negative: sent late, ahead)
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if rate <= 0 {
				<-stub.Interrupt
				keep(stub, c)
				return
			}
			piece := int(rate * 100) // bytes per 100 ms
			data := c.Data
			owed += time.Duration(len(data)) * time.Millisecond / time.Duration(rate)
			for len(data) > 0 {
				n := min(len(data), piece)
				wait := 100 * time.Millisecond
				if n == len(data) {
					wait = max(owed, 0)
				}
				start := time.Now()
				select {
				case <-time.After(wait):
				case <-stub.Interrupt:
					keep(stub, &stream.StreamChunk{Data: data, Timestamp: c.Timestamp})
					return
				}
				owed -= time.Since(start)
				if !send(stub, &stream.StreamChunk{Data: data[:n], Timestamp: c.Timestamp}) {
					keep(stub, &stream.StreamChunk{Data: data[n:], Timestamp: c.Timestamp})
					return
				}
				data = data[n:]
			}
		}
	}
}

// Slicer cuts each chunk into pieces of AverageSize ± SizeVariation bytes, sent Delay microseconds
// apart (Toxiproxy's slicer toxic).
type Slicer struct {
	guarded[slicerAttrs]
}

type slicerAttrs struct {
	AverageSize   int `json:"average_size"`
	SizeVariation int `json:"size_variation"`
	Delay         int `json:"delay"` // microseconds
}

// NewState implements toxics.StatefulToxic: what an interrupted run held.
func (t *Slicer) NewState() any { return newHeld() }

// Cleanup implements toxics.CleanupToxic: on removal, what the toxic held goes on first.
func (t *Slicer) Cleanup(stub *toxics.ToxicStub) { cleanup(stub) }

// Pipe sends each chunk piece by piece.
func (t *Slicer) Pipe(stub *toxics.ToxicStub) {
	if !resume(stub) {
		return
	}
	a := t.get()
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			data := c.Data
			for len(data) > 0 {
				n := min(len(data), a.pieceSize())
				if !send(stub, &stream.StreamChunk{Data: data[:n], Timestamp: c.Timestamp}) {
					keep(stub, &stream.StreamChunk{Data: data[n:], Timestamp: c.Timestamp})
					return
				}
				data = data[n:]
				if len(data) == 0 {
					break
				}
				select {
				case <-time.After(time.Duration(a.Delay) * time.Microsecond):
				case <-stub.Interrupt:
					keep(stub, &stream.StreamChunk{Data: data, Timestamp: c.Timestamp})
					return
				}
			}
		}
	}
}

// pieceSize draws a size in [AverageSize-SizeVariation, AverageSize+SizeVariation], at least 1.
func (a slicerAttrs) pieceSize() int {
	size := a.AverageSize
	if v := a.SizeVariation; v > 0 {
		size += rand.IntN(2*v+1) - v
	}
	return max(size, 1)
}
