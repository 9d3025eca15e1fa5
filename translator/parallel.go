package translator

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// forEach calls f(i) for every i in [0, n) on up to GOMAXPROCS goroutines (the caller's is one
// of them) and returns when every call has returned.
//
// The translator runs its per-object stages this way: each object (a backend, a route, a
// policy) is translated on its own by f, which reads only what earlier stages completed and
// writes only to its object (its refusals too, see problems); then the stage registers the
// results in input order on one goroutine. So the output does not depend on the schedule, and
// a translation uses every CPU.
func forEach(n int, f func(i int)) {
	var next atomic.Int64
	work := func() {
		for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
			f(int(i))
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// concurrently runs the stages fs at the same time and returns when all have returned.
func concurrently(fs ...func()) {
	forEach(len(fs), func(i int) { fs[i]() })
}
