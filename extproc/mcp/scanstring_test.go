package mcp

import (
	"math/rand/v2"
	"testing"
)

// TestPlainRun: the word-at-a-time scan stops where a byte-at-a-time one stops, with the bytes that
// matter at every offset of a word (the scan of a string is otherwise as it was).
func TestPlainRun(t *testing.T) {
	byByte := func(b []byte, i int) int {
		for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		return i
	}
	special := []byte{0x1f, 0x00, '\t', '\n', '"', '\\', 0x7f, 0x80, 0xa2, 0xdc, 0xff, 0x20, 0x21, 0x5b, 0x5d, 0x9f}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		b := make([]byte, r.IntN(40))
		for j := range b {
			if r.IntN(6) == 0 {
				b[j] = special[r.IntN(len(special))]
			} else {
				b[j] = byte(0x20 + r.IntN(0xe0))
			}
		}
		for i := 0; i <= len(b); i += 1 + r.IntN(9) {
			if got, want := plainRun(b, i), byByte(b, i); got != want {
				t.Fatalf("plainRun(%q, %d) = %d, want %d", b, i, got, want)
			}
		}
	}
}

// BenchmarkParseAnswer parses a tools/call answer whose text is 8 KiB, the part of a body that is
// the text of strings.
func BenchmarkParseAnswer(b *testing.B) {
	text := make([]byte, 8<<10)
	for i := range text {
		const letters = "abcdefghij klmnopqrstuvwxyz.,"
		text[i] = letters[i%len(letters)]
	}
	body := []byte(`{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"` + string(text) + `"}]}}`)
	var buf [1]Message
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseInto(buf[:0], body); err != nil {
			b.Fatal(err)
		}
	}
}
