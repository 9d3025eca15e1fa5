package main

import (
	"strings"
	"testing"
)

// TestFlagsOnce refuses a flag given twice, under either of its names, as Envoy does; flags
// given once each, and values that look like flags, pass.
func TestFlagsOnce(t *testing.T) {
	for _, c := range []struct {
		args    string
		refused bool
	}{
		{"-c b.yaml --file-flush-interval-msec 1000 --file-flush-interval-msec 100", true},
		{"-c b.yaml --config-path b.yaml", true},
		{"-c b.yaml -l info --log-level debug", true},
		{"-c b.yaml --disable-hot-restart --disable-hot-restart", true},
		{"-c b.yaml --disable-hot-restart --log-level info --file-flush-interval-msec 100", false},
		{"--base-id=1 -c=b.yaml --service-node -c", false},
	} {
		err := run(strings.Fields(c.args))
		refused := err != nil && strings.Contains(err.Error(), "given twice")
		if refused != c.refused {
			t.Errorf("%q: err %v, want refused=%v", c.args, err, c.refused)
		}
	}
}
