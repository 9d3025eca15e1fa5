package mcp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// maxDepth bounds the nesting of JSON values the scanner accepts, so that hostile input cannot
// exhaust the stack.
const maxDepth = 512

// errSyntax is wrapped by every scanner error.
var errSyntax = errors.New("invalid JSON")

func syntaxErr(i int, what string) error {
	return fmt.Errorf("%w at byte %d: %s", errSyntax, i, what)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// trimJSON removes a UTF-8 byte order mark and surrounding white space. Some servers (Node's
// body-parser decodes with iconv-lite) accept a leading BOM, so the gateway must read past it too.
func trimJSON(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		b = b[3:]
	}
	i := skipSpace(b, 0)
	j := len(b)
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// scanString returns the index just past the string starting at b[i] == '"' and whether it holds
// escapes. Bytes are not checked for UTF-8 validity: JSON parsers of MCP servers replace invalid
// sequences rather than refuse them, and the gateway must read what they read.
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	i++
	for {
		if i = plainRun(b, i); i >= len(b) {
			return 0, false, syntaxErr(i, "unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, syntaxErr(i, "unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return 0, false, syntaxErr(i, "short \\u escape")
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return 0, false, syntaxErr(i, "bad \\u escape")
					}
				}
				i += 6
			default:
				return 0, false, syntaxErr(i, "bad escape")
			}
		default:
			return 0, false, syntaxErr(i, "control character in string")
		}
	}
}

// plainRun returns the index of the first byte from b[i] on that ends a string, starts an escape or
// may not be in a string ('"', '\\', a control character), len(b) when there is none. It looks at
// eight bytes at a time: most of a body is the text of strings.
func plainRun(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, s := x^(ones*'"'), x^(ones*'\\')
		// A byte of the word is under 0x20, or a zero byte in q or s: the high bit of some byte
		// is then set (a set bit may also follow a byte that matches, never come alone).
		if ((x-ones*0x20)&^x|(q-ones)&^q|(s-ones)&^s)&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber returns the index just past the JSON number starting at b[i].
func scanNumber(b []byte, i int) (int, error) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return 0, syntaxErr(start, "bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return 0, syntaxErr(start, "bad fraction")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return 0, syntaxErr(start, "bad exponent")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, nil
}

// skipValue returns the index just past the JSON value starting at b[i] (no leading space).
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, syntaxErr(i, "unexpected end")
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, syntaxErr(i, "nested too deeply")
		}
		return skipComposite(b, i, depth+1)
	case c == '-' || isDigit(c):
		return scanNumber(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	default:
		return 0, syntaxErr(i, fmt.Sprintf("unexpected %q", c))
	}
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, syntaxErr(i, "bad literal")
	}
	return i + len(lit), nil
}

// skipComposite skips an object or array starting at b[i].
func skipComposite(b []byte, i, depth int) (int, error) {
	obj := b[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1, nil
	}
	for {
		var err error
		if obj {
			if i >= len(b) || b[i] != '"' {
				return 0, syntaxErr(i, "expected member name")
			}
			if i, _, err = scanString(b, i); err != nil {
				return 0, err
			}
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != ':' {
				return 0, syntaxErr(i, "expected ':'")
			}
			i = skipSpace(b, i+1)
		}
		if i, err = skipValue(b, i, depth); err != nil {
			return 0, err
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end")
		}
		if b[i] == closer {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, syntaxErr(i, "expected ',' or close")
		}
		i = skipSpace(b, i+1)
	}
}

// member is one name/value pair of a JSON object.
type member struct {
	// name is the decoded member name. It aliases the input when the name has no escapes.
	name []byte
	// start and end delimit the whole member (name through value) in the object's bytes.
	start, end int
	// value is the member's raw JSON value.
	value []byte
}

// eachMember calls fn for every member of the JSON object b (exactly one object, surrounding space
// allowed). It stops at the first error, from the syntax or from fn.
func eachMember(b []byte, fn func(m member) error) error {
	return walkObject(b, func(name []byte, start, vstart int) (int, error) {
		end, err := skipValue(b, vstart, 1)
		if err != nil {
			return 0, err
		}
		return end, fn(member{name: name, start: start, end: end, value: b[vstart:end]})
	})
}

// walkObject walks the JSON object b (exactly one object, surrounding space allowed) as walkMembers
// does at depth 1.
func walkObject(b []byte, value valueFunc) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return syntaxErr(i, "expected object")
	}
	end, err := walkMembers(b, i, value)
	if err != nil {
		return err
	}
	if skipSpace(b, end) != len(b) {
		return syntaxErr(end, "trailing data")
	}
	return nil
}

// valueFunc reads the value of the member name, which starts at b[start] (its name) and whose value
// starts at b[vstart], and returns the index just past the value.
type valueFunc func(name []byte, start, vstart int) (end int, err error)

// walkMembers walks the members of the object starting at b[i] == '{', calling value for each with
// its decoded name (aliasing b when it has no escapes), and returns the index just past the object.
// value reads the member's value itself (skipValue, or a walk of its own), so that a caller reads
// the object and what it wants of its values in one pass.
func walkMembers(b []byte, i int, value valueFunc) (int, error) {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, syntaxErr(i, "expected member name")
		}
		start := i
		end, escaped, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		name := b[i+1 : end-1]
		if escaped {
			var s string
			if err := json.Unmarshal(b[i:end], &s); err != nil {
				return 0, syntaxErr(i, "bad member name")
			}
			name = []byte(s)
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, syntaxErr(i, "expected ':'")
		}
		i = skipSpace(b, i+1)
		if i, err = value(name, start, i); err != nil {
			return 0, err
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end")
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, syntaxErr(i, "expected ',' or '}'")
		}
		i = skipSpace(b, i+1)
	}
}

// eachElement calls fn with the raw bytes of every element of the JSON array b.
func eachElement(b []byte, fn func(elem []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return syntaxErr(i, "expected array")
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		if skipSpace(b, i+1) != len(b) {
			return syntaxErr(i+1, "trailing data")
		}
		return nil
	}
	for {
		start := i
		end, err := skipValue(b, i, 1)
		if err != nil {
			return err
		}
		if err := fn(b[start:end]); err != nil {
			return err
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return syntaxErr(i, "unexpected end")
		}
		if b[i] == ']' {
			if skipSpace(b, i+1) != len(b) {
				return syntaxErr(i+1, "trailing data")
			}
			return nil
		}
		if b[i] != ',' {
			return syntaxErr(i, "expected ',' or ']'")
		}
		i = skipSpace(b, i+1)
	}
}

// stringValue decodes a raw JSON string value; ok is false when raw is not a string.
func stringValue(raw []byte) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	end, escaped, err := scanString(raw, 0)
	if err != nil || end != len(raw) {
		return "", false
	}
	if !escaped {
		return string(raw[1 : len(raw)-1]), true
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// AmbiguousMembers reports whether an object anywhere in the JSON value raw has two members whose
// names are equal when case is folded (repeated names included): JSON parsers disagree on which
// of them counts (the last, the first, or either without regard to case). Invalid JSON reports
// true.
func AmbiguousMembers(raw []byte) bool {
	amb, err := ambiguousIn(trimJSON(raw))
	return amb || err != nil
}

// errFound stops a walk that found what it looked for.
var errFound = errors.New("found")

// ambiguousIn walks the JSON value b (its depth was bounded when it was first scanned).
func ambiguousIn(b []byte) (bool, error) {
	var err error
	switch {
	case len(b) > 0 && b[0] == '{':
		seen := map[string]struct{}{}
		err = eachMember(b, func(mb member) error {
			k := foldKey(mb.name)
			if _, dup := seen[k]; dup {
				return errFound
			}
			seen[k] = struct{}{}
			return within(mb.value)
		})
	case len(b) > 0 && b[0] == '[':
		err = eachElement(b, within)
	}
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// within continues the walk of ambiguousIn into a member or element.
func within(v []byte) error {
	amb, err := ambiguousIn(v)
	if amb {
		return errFound
	}
	return err
}

// foldKey returns a key equal for two names exactly when bytes.EqualFold holds for them: each
// rune becomes the smallest rune of its case-folding orbit (so K, k and the Kelvin sign meet).
func foldKey(name []byte) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range string(name) {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}
