// Package bind ties an MCP session to the caller that opened it, as MCP's security best
// practices ask of servers ("bind session IDs to user-specific information"): a session id
// stolen from one caller is of no use to another.
//
// The gateway does it without state, so that any replica can check any session: the id a server
// gives (its Mcp-Session-Id, or the legacy SSE sessionId of its endpoint event) reaches the
// client sealed, followed by a tag, an HMAC-SHA256 of the caller and the id under a key the
// replicas share:
//
//	SERVER_ID "." base64url(HMAC-SHA256(key, "mcpgate-session-v2", verified, issuer, subject, SERVER_ID)[:16])
//
// A request's session id is opened with the request's caller: the tag must match, and the server
// gets its own id back. Anything else (another caller's session, an unsealed or altered id, one
// sealed under another key) is not a session of this caller.
//
// The same key names a caller to the mux without saying who it is (Binder.CallerID): an HMAC of
// the caller under another domain, so that it is neither a session's tag nor the caller in clear.
package bind

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// KeySize is the least number of bytes of a key.
const KeySize = 32

// tagSize is how many bytes of the HMAC a sealed id keeps (128 bits); encodedTagSize the length
// of their unpadded base64url.
const (
	tagSize        = 16
	encodedTagSize = 22
)

// sep separates the server's id from the tag. The server's id may hold it too: the tag follows
// the last one.
const sep = '.'

// domain keeps these tags apart from any other use of the key, and from the tags of another
// version of the input: v1 had no verified part, so a session sealed by an earlier mcpgate is
// not found (its client starts a new one).
const domain = "mcpgate-session-v2"

// callerDomain keeps CallerID's HMACs apart from the session tags (domain).
const callerDomain = "mcpgate-caller-v1"

// Caller is who a session belongs to: a verified token's issuer and subject, or the zero Caller
// for a caller without one. Tokens of one issuer without a sub claim are one caller.
type Caller struct {
	// Verified is set for a caller with a verified token: its sessions are never an anonymous
	// caller's, even when its token has neither iss nor sub.
	Verified bool
	// Issuer and Subject are the iss and sub claims of the caller's verified token.
	Issuer, Subject string
}

// Binder seals and opens session ids with one key. It is safe for concurrent use.
type Binder struct {
	macs sync.Pool // of *mac
}

// mac is an HMAC-SHA256 under the key, the buffer of its message and the storage of its sum.
type mac struct {
	h   hash.Hash
	msg []byte
	sum [sha256.Size]byte
}

// New returns a Binder for key, which must have at least KeySize bytes. The key is copied.
func New(key []byte) (*Binder, error) {
	if len(key) < KeySize {
		return nil, fmt.Errorf("session key: at least %d bytes are required, got %d", KeySize, len(key))
	}
	k := append([]byte(nil), key...)
	return &Binder{macs: sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, k)} }}}, nil
}

// Seal returns id sealed for caller: the id the client gets.
func (b *Binder) Seal(id string, c Caller) string {
	var tag [tagSize]byte
	b.tag(&tag, domain, c, id)
	var enc [encodedTagSize]byte
	base64.RawURLEncoding.Encode(enc[:], tag[:])
	var out strings.Builder
	out.Grow(len(id) + 1 + encodedTagSize)
	out.WriteString(id)
	out.WriteByte(sep)
	out.Write(enc[:])
	return out.String()
}

// Open returns the server's id of sealed when it was sealed for caller under this Binder's key;
// ok is false otherwise. An id Open accepts is exactly Seal(id, caller).
func (b *Binder) Open(sealed string, c Caller) (id string, ok bool) {
	i := strings.LastIndexByte(sealed, sep)
	if i < 0 {
		return "", false
	}
	var enc [encodedTagSize]byte
	if len(sealed)-i-1 != encodedTagSize {
		return "", false
	}
	copy(enc[:], sealed[i+1:])
	var got [tagSize]byte
	// Strict: the last character's unused bits must be zero, so a session has one sealed form.
	if n, err := base64.RawURLEncoding.Strict().Decode(got[:], enc[:]); err != nil || n != tagSize {
		return "", false
	}
	id = sealed[:i]
	var want [tagSize]byte
	b.tag(&want, domain, c, id)
	if !hmac.Equal(got[:], want[:]) {
		return "", false
	}
	return id, true
}

// CallerID returns an opaque name of the caller c for counting what it holds (the mux's sessions,
// contract.HeaderMuxCaller): base64url (unpadded) of the first 16 bytes of
// HMAC-SHA256(key, "mcpgate-caller-v1", verified, issuer, subject, source). source, the client's
// address, is read only for a caller without a verified token (callers without one are told apart
// by their address alone); a verified caller has one name wherever it comes from. The name shows
// neither the token nor its claims, and differs under another key.
func (b *Binder) CallerID(c Caller, source string) string {
	if c.Verified {
		source = ""
	}
	var sum [tagSize]byte
	b.tag(&sum, callerDomain, c, source)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// tag writes the tag of id and c under domain d into t. Each part is length-prefixed, so that no
// two (caller, id) pairs hash the same bytes.
func (b *Binder) tag(t *[tagSize]byte, d string, c Caller, id string) {
	m := b.macs.Get().(*mac)
	msg := m.msg[:0]
	verified := "0"
	if c.Verified {
		verified = "1"
	}
	for _, part := range [...]string{d, verified, c.Issuer, c.Subject, id} {
		msg = binary.AppendUvarint(msg, uint64(len(part)))
		msg = append(msg, part...)
	}
	m.h.Write(msg)
	copy(t[:], m.h.Sum(m.sum[:0]))
	m.h.Reset()
	m.msg = msg
	b.macs.Put(m)
}
