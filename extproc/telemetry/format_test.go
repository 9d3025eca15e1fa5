package telemetry

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestAppendMillis: the latency is written as strconv writes the double us/1000, at the edges and
// over random values of every magnitude.
func TestAppendMillis(t *testing.T) {
	values := []int64{0, 1, -1, 9, 10, 100, 999, 1000, 1001, 1010, 1100, 1500, 123456789, -1500, -999, 1e12 - 1, 1e12, -1e12 + 1, -1e12,
		1 << 53, 1<<53 + 1, -(1 << 53), -(1<<53 + 1), 1<<62 + 12345, -(1 << 62), 1<<63 - 1, -1 << 63}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		v := r.Int64N(1 << uint(1+r.IntN(62)))
		if r.IntN(8) == 0 {
			v = -v
		}
		values = append(values, v)
	}
	for _, us := range values {
		want := strconv.AppendFloat(nil, float64(us)/1000, 'f', -1, 64)
		if got := appendMillis(nil, us); string(got) != string(want) {
			t.Fatalf("appendMillis(%d) = %s, want %s", us, got, want)
		}
	}
}
