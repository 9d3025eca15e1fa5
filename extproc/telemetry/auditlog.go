package telemetry

import (
	"io"
	"log/slog"
	"sync"
)

// maxAuditBatch bounds the audit bytes that wait for a write in progress: past it, a line waits
// until that write ends (as every line waited for the one before it when each had its own
// write), so that a stalled destination holds the streams back instead of filling memory.
const maxAuditBatch = 1 << 20

// maxAuditSpare is the largest batch buffer kept for the next batch once written.
const maxAuditSpare = 64 << 10

// auditLog writes audit lines to an io.Writer a batch at a time. A line joins the batch; the
// caller that finds no write in progress writes the batch, then each batch that formed while it
// wrote, and returns when none is left. So the lines of concurrent streams share one write (one
// system call to a file or stdout) instead of queueing for one each, no line waits for a later
// line, and once every add has returned, every line has been written: nothing is left to flush
// at exit. A line waits at most for the write in progress when it came.
type auditLog struct {
	w   io.Writer
	log *slog.Logger

	mu sync.Mutex
	// room is signalled when a write takes the batch.
	room sync.Cond
	// batch holds the lines waiting for the write in progress; spare is the buffer of the last
	// written batch, reused for the next.
	batch, spare []byte
	// writing: a caller is writing, and writes batch before it returns.
	writing bool
}

func newAuditLog(w io.Writer, log *slog.Logger) *auditLog {
	a := &auditLog{w: w, log: log}
	a.room.L = &a.mu
	return a
}

// add writes line (one audit line with its newline), or leaves it to the write in progress.
func (a *auditLog) add(line []byte) {
	a.mu.Lock()
	for a.writing && len(a.batch) >= maxAuditBatch {
		a.room.Wait()
	}
	a.batch = append(a.batch, line...)
	if a.writing {
		a.mu.Unlock()
		return
	}
	a.writing = true
	a.writeBatches()
}

// writeBatches writes the batch until none is left. It is called with mu held and writing set,
// and returns with mu released and writing cleared, also when the writer panics (a later line
// then starts a write of its own instead of waiting for this one).
func (a *auditLog) writeBatches() {
	locked := true
	defer func() {
		if !locked {
			a.mu.Lock()
		}
		a.writing = false
		a.room.Broadcast()
		a.mu.Unlock()
	}()
	for len(a.batch) > 0 {
		out := a.batch
		a.batch, a.spare = a.spare[:0], nil
		a.room.Broadcast()
		locked = false
		a.mu.Unlock()
		if _, err := a.w.Write(out); err != nil {
			a.log.Error("audit log write failed", "error", err)
		}
		a.mu.Lock()
		locked = true
		if cap(out) <= maxAuditSpare {
			a.spare = out[:0]
		}
	}
}
