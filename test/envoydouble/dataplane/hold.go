package dataplane

import (
	"errors"
	"io"
	"sync"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/mcpgate/mcpgate/test/envoydouble/extprocfilter"
	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
)

// responseHeadersHoldingBody sends the response headers to ext_proc while the upstream's body
// keeps arriving, as in Envoy, where the body does not wait for ext_proc's reply: ext_proc.cc
// onData, while the headers' reply is awaited (CallbackState::HeadersCallback), holds every data
// callback. With the body mode in force then BUFFERED it returns StopIterationAndBuffer, so the
// filter manager buffers the data without back-pressure and, once it holds more than the buffer
// limit (per_connection_buffer_limit_bytes), answers 500 (ActiveStreamEncoderFilter::
// responseDataTooLarge, encoder_filters_streaming_ false; sendLocalReply goes directly to the
// codec since the response headers exist), however ext_proc would have answered. In every other
// mode it returns StopIterationAndWatermark: the data waits and the upstream is read no further
// past the limit. over reports the 500; otherwise rest is the whole body, what arrived meanwhile
// first, and whole says it arrived entirely before the reply: processor_state.cc
// handleHeadersResponse then sends it as one message with end_of_stream, handled as a BUFFERED
// body (BufferedBodyCallback) whatever the body mode (STREAMED and BUFFERED_PARTIAL included).
func (st *stream) responseHeadersHoldingBody(h *headers.Map, body io.Reader) (res extprocfilter.Result, rest io.Reader, whole, over bool) {
	buffered := st.ep.BodyMode(extprocfilter.Response) == extprocv3.ProcessingMode_BUFFERED
	// The headers message is sent before any data is handled (encodeHeaders precedes
	// encodeData), so ext_proc gets it even when the body then overflows at once.
	reply := st.ep.StartResponseHeaders(h)
	hb := newHeldBody(body)
	go hb.pump(int(st.lis.BufferLimit))
	done := make(chan extprocfilter.Result, 1)
	go func() { done <- reply() }()
	select {
	case res = <-done:
	case <-hb.over:
		if buffered {
			// The reply still awaited is dropped: the stream ends, and with it the ext_proc
			// stream (finish closes it, which releases the wait).
			return extprocfilter.Result{}, nil, false, true
		}
		res = <-done
	}
	close(hb.stop)
	return res, hb, hb.whole(), false
}

// heldBody reads a body ahead (pump) while ext_proc's reply to the headers is awaited, up to just
// past a limit, and then serves what it read followed by the rest. Read is called once the pump
// was told to stop: it serves what the pump read, waiting for a read in flight, then reads on.
type heldBody struct {
	r    io.Reader
	mu   sync.Mutex
	cond *sync.Cond // signalled when buf grows or the pump exits
	buf  []byte
	err  error // the pump's read error (io.EOF at the end), served after buf
	done bool  // the pump exited
	stop chan struct{}
	over chan struct{} // closed when buf holds more than the limit
}

func newHeldBody(r io.Reader) *heldBody {
	b := &heldBody{r: r, stop: make(chan struct{}), over: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *heldBody) pump(limit int) {
	defer func() {
		b.mu.Lock()
		b.done = true
		b.cond.Broadcast()
		b.mu.Unlock()
	}()
	p := make([]byte, 32<<10)
	for {
		select {
		case <-b.stop:
			return
		default:
		}
		n, err := b.r.Read(p)
		b.mu.Lock()
		b.buf = append(b.buf, p[:n]...)
		b.err = err
		size := len(b.buf)
		b.cond.Broadcast()
		b.mu.Unlock()
		if size > limit {
			close(b.over)
			return
		}
		if err != nil {
			return
		}
	}
}

// whole reports whether the pump has read the body to its end (a read in flight has not).
func (b *heldBody) whole() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return errors.Is(b.err, io.EOF)
}

// Read serves what the pump read, then its error or the rest of the body.
func (b *heldBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.buf) == 0 && !b.done {
		b.cond.Wait()
	}
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		b.mu.Unlock()
		return n, nil
	}
	err := b.err
	b.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return b.r.Read(p)
}
