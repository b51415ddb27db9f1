// Package interruptible replaces two of Toxiproxy's toxics, bandwidth and slicer, with versions whose
// every hand-off to the next stage of the link also listens for an interrupt.
//
// Upstream's hand their data on with a plain channel send. When the stage after them stalls (the
// client stopped reading, its socket buffer is full), the send blocks, and removing the toxic, which
// interrupts it and waits for it to stop, waits forever while holding the proxy's toxic lock: every
// later API call on that proxy, a reset included, times out after 25 s with a 503
// (Shopify/toxiproxy#558). The lab's catalog-bandwidth scenario hit it in a CI run and every scenario
// after it failed to reset. These keep the same type names and attributes, so clients see no change.
package interruptible

import (
	"math/rand/v2"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// Register puts these toxics in Toxiproxy's registry in place of its own bandwidth and slicer.
func Register() {
	toxics.Register("bandwidth", new(Bandwidth))
	toxics.Register("slicer", new(Slicer))
}

// flushWait bounds how long an interrupted toxic waits to hand on the data it holds (upstream's 5 s):
// data is not dropped unless the next stage is stalled for that long.
const flushWait = 5 * time.Second

// send hands c to the next stage. Interrupted first, it flushes c within flushWait and returns false:
// the toxic must stop.
func send(stub *toxics.ToxicStub, c *stream.StreamChunk) bool {
	select {
	case stub.Output <- c:
		return true
	case <-stub.Interrupt:
		_ = stub.WriteOutput(c, flushWait)
		return false
	}
}

// Bandwidth passes data through at Rate KB/s (Toxiproxy's bandwidth toxic); a rate of 0 or less holds
// it until the toxic is removed.
type Bandwidth struct {
	Rate int64 `json:"rate"` // KB/s
}

// Pipe sends each chunk once the rate allows, in pieces of at most 100 ms worth of data.
func (t *Bandwidth) Pipe(stub *toxics.ToxicStub) {
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
			if t.Rate <= 0 {
				<-stub.Interrupt
				_ = stub.WriteOutput(c, flushWait)
				return
			}
			piece := int(t.Rate * 100) // bytes per 100 ms
			data := c.Data
			owed += time.Duration(len(data)) * time.Millisecond / time.Duration(t.Rate)
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
					_ = stub.WriteOutput(&stream.StreamChunk{Data: data, Timestamp: c.Timestamp}, flushWait)
					return
				}
				owed -= time.Since(start)
				if !send(stub, &stream.StreamChunk{Data: data[:n], Timestamp: c.Timestamp}) {
					if rest := data[n:]; len(rest) > 0 {
						_ = stub.WriteOutput(&stream.StreamChunk{Data: rest, Timestamp: c.Timestamp}, flushWait)
					}
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
	AverageSize   int `json:"average_size"`
	SizeVariation int `json:"size_variation"`
	Delay         int `json:"delay"` // microseconds
}

// Pipe sends each chunk piece by piece.
func (t *Slicer) Pipe(stub *toxics.ToxicStub) {
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
				n := min(len(data), t.pieceSize())
				if !send(stub, &stream.StreamChunk{Data: data[:n], Timestamp: c.Timestamp}) {
					if rest := data[n:]; len(rest) > 0 {
						_ = stub.WriteOutput(&stream.StreamChunk{Data: rest, Timestamp: c.Timestamp}, flushWait)
					}
					return
				}
				data = data[n:]
				if len(data) == 0 {
					break
				}
				select {
				case <-time.After(time.Duration(t.Delay) * time.Microsecond):
				case <-stub.Interrupt:
					_ = stub.WriteOutput(&stream.StreamChunk{Data: data, Timestamp: c.Timestamp}, flushWait)
					return
				}
			}
		}
	}
}

// pieceSize draws a size in [AverageSize-SizeVariation, AverageSize+SizeVariation], at least 1.
func (t *Slicer) pieceSize() int {
	size := t.AverageSize
	if v := t.SizeVariation; v > 0 {
		size += rand.IntN(2*v+1) - v
	}
	return max(size, 1)
}
