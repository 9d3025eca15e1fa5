package bind

import (
	"bytes"
	"strings"
	"testing"
)

func binder(t testing.TB, fill byte) *Binder {
	t.Helper()
	b, err := New(bytes.Repeat([]byte{fill}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	b := binder(t, 1)
	alice := Caller{Verified: true, Issuer: "solo.io", Subject: "alice"}
	for _, id := range []string{"OPCAI5PJURGN4ASUWVV56SWYUW", "a.b.c", "x", "9f0e-4b1a"} {
		sealed := b.Seal(id, alice)
		if !strings.HasPrefix(sealed, id+".") || len(sealed) != len(id)+1+22 {
			t.Errorf("Seal(%q) = %q: want the id, a dot and a 22-character tag", id, sealed)
		}
		if got, ok := b.Open(sealed, alice); !ok || got != id {
			t.Errorf("Open(Seal(%q)) = %q, %v; want the id back", id, got, ok)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	b := binder(t, 1)
	alice := Caller{Verified: true, Issuer: "solo.io", Subject: "alice"}
	sealed := b.Seal("S1", alice)
	tag := sealed[len("S1."):]
	// A middle character of the tag replaced by another base64url one: it decodes (Strict), so
	// only the MAC tells it apart.
	flipped := []byte(sealed)
	mid := len("S1.") + 10
	if flipped[mid] == 'A' {
		flipped[mid] = 'B'
	} else {
		flipped[mid] = 'A'
	}
	cases := map[string]struct {
		b      *Binder
		sealed string
		c      Caller
	}{
		"another subject":       {b, sealed, Caller{Verified: true, Issuer: "solo.io", Subject: "bob"}},
		"another issuer":        {b, sealed, Caller{Verified: true, Issuer: "other", Subject: "alice"}},
		"no caller":             {b, sealed, Caller{}},
		"another key":           {binder(t, 2), sealed, alice},
		"unsealed":              {b, "S1", alice},
		"another id, same tag":  {b, "S2." + tag, alice},
		"altered tag":           {b, string(flipped), alice},
		"tag cut short":         {b, sealed[:len(sealed)-1], alice},
		"tag too long":          {b, sealed + "A", alice},
		"empty":                 {b, "", alice},
		"padded base64":         {b, sealed + "==", alice},
		"unused bits set":       {b, sealed[:len(sealed)-1] + string(sealed[len(sealed)-1]+1), alice},
		"issuer/subject border": {b, b.Seal("S1", Caller{Verified: true, Issuer: "solo.ioa", Subject: "lice"}), alice},
		// A token with neither iss nor sub (a provider without an issuer) is not anonymous.
		"verified, no claims, opened anonymously":   {b, b.Seal("S1", Caller{Verified: true}), Caller{}},
		"anonymous, opened verified without claims": {b, b.Seal("S1", Caller{}), Caller{Verified: true}},
	}
	for name, c := range cases {
		if id, ok := c.b.Open(c.sealed, c.c); ok {
			t.Errorf("%s: Open(%q) = %q, true; want refused", name, c.sealed, id)
		}
	}
	// An anonymous caller's session opens for anonymous callers only.
	anon := b.Seal("S3", Caller{})
	if _, ok := b.Open(anon, Caller{}); !ok {
		t.Error("an anonymous session does not open for an anonymous caller")
	}
	if _, ok := b.Open(anon, alice); ok {
		t.Error("an anonymous session opens for a caller with a token")
	}
}

func TestNewKey(t *testing.T) {
	if _, err := New(make([]byte, KeySize-1)); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Errorf("New(31 bytes) = %v; want an error naming the size", err)
	}
	key := bytes.Repeat([]byte{7}, KeySize)
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := b.Seal("S", Caller{})
	key[0] = 8 // the Binder holds its own copy
	if _, ok := b.Open(sealed, Caller{}); !ok {
		t.Error("changing the caller's key slice changed the Binder's key")
	}
}

func BenchmarkOpen(b *testing.B) {
	bd := binder(b, 1)
	c := Caller{Verified: true, Issuer: "solo.io", Subject: "alice"}
	sealed := bd.Seal("OPCAI5PJURGN4ASUWVV56SWYUW", c)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := bd.Open(sealed, c); !ok {
			b.Fatal("refused")
		}
	}
}

// TestCallerID: a caller's name is 22 base64url characters that show neither issuer nor subject;
// it is the same for the same caller (a verified one wherever it comes from) and differs for
// another subject, issuer, key, for a caller without a token from another address, and from
// the session tags of the same input.
func TestCallerID(t *testing.T) {
	b := binder(t, 1)
	alice := Caller{Verified: true, Issuer: "solo.io", Subject: "alice"}
	id := b.CallerID(alice, "10.0.0.1")
	if len(id) != 22 || strings.Contains(id, "alice") || strings.ContainsAny(id, "+/=") {
		t.Errorf("CallerID(alice) = %q: want 22 base64url characters, the subject not in clear", id)
	}
	if got := b.CallerID(alice, "10.0.0.2"); got != id {
		t.Errorf("CallerID(alice) from another address = %q, want %q: a verified caller is one caller", got, id)
	}
	anon := b.CallerID(Caller{}, "10.0.0.1")
	differ := map[string]string{
		"another subject": b.CallerID(Caller{Verified: true, Issuer: "solo.io", Subject: "bob"}, "10.0.0.1"),
		"another issuer":  b.CallerID(Caller{Verified: true, Issuer: "other", Subject: "alice"}, "10.0.0.1"),
		"another key":     binder(t, 2).CallerID(alice, "10.0.0.1"),
		"no token":        anon,
		"a session tag":   b.Seal("", alice)[1:],
	}
	for name, got := range differ {
		if got == id {
			t.Errorf("%s: CallerID %q, the same as alice's", name, got)
		}
	}
	if got := b.CallerID(Caller{}, "10.0.0.2"); got == anon {
		t.Errorf("no token, another address: %q, the same as from 10.0.0.1", got)
	}
	if got := b.CallerID(Caller{}, "10.0.0.1"); got != anon {
		t.Errorf("no token, the same address: %q, want %q", got, anon)
	}
}
