package extproc

import (
	"fmt"
	"maps"
	"testing"
)

// TestPendingSet: the set finds, replaces and removes exchanges by key alike with few of them (its
// own storage, in order) and with more (a map), and drain empties it.
func TestPendingSet(t *testing.T) {
	for _, n := range []int{1, pendingFew, pendingFew + 1, 3 * pendingFew} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var p pendingSet
			want := map[string]*exchange{}
			for i := range n {
				key := fmt.Sprintf("n%d", i)
				ex := &exchange{}
				if old := p.put(key, ex); old != nil {
					t.Fatalf("put(%s) replaced %p", key, old)
				}
				want[key] = ex
			}
			if n <= pendingFew {
				// Few are held in the order they came.
				i := 0
				for key := range p.all() {
					if key != fmt.Sprintf("n%d", i) {
						t.Fatalf("key %d is %s", i, key)
					}
					i++
				}
			}
			// A repeated key replaces its exchange and returns the one it replaced.
			again := &exchange{}
			if old := p.put("n0", again); old != want["n0"] {
				t.Fatalf("put of a repeated key replaced %p, want %p", old, want["n0"])
			}
			want["n0"] = again
			if p.len() != n {
				t.Fatalf("len = %d, want %d", p.len(), n)
			}
			if got := maps.Collect(p.all()); !maps.Equal(got, want) {
				t.Fatalf("all = %v, want %v", got, want)
			}
			last := fmt.Sprintf("n%d", n-1)
			if ex := p.take(last); ex != want[last] || p.take(last) != nil || p.take("absent") != nil {
				t.Fatalf("take(%s) = %p, want %p once", last, ex, want[last])
			}
			delete(want, last)
			got := map[string]*exchange{}
			for key, ex := range p.drain() {
				if p.take(key) != nil {
					t.Fatalf("drain yielded %s before removing it", key)
				}
				got[key] = ex
			}
			if !maps.Equal(got, want) || p.len() != 0 {
				t.Fatalf("drain = %v (len after %d), want %v", got, p.len(), want)
			}
		})
	}
}
