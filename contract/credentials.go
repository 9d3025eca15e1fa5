package contract

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// CredentialKeys returns the usual last words of credentials' names, the default redaction keys
// of tool arguments (extproc.DefaultRedactKeys) and the names of the header values the
// translator keeps out of printed configuration (IsCredentialName). A name matches a key when,
// both folded (AppendFolded), the name ends with the key: "token" matches "github_token",
// "accessToken", "id-token" and "X-Auth-Token" but not "max_tokens" or "token_count"; "api_key"
// matches "X-Api-Key" and "x-goog-api-key", not "keyword" or "monkey". Plurals are listed where a
// list or map of credentials is usual ("cookies", "credentials", "secrets"); "tokens" is not, as
// "max_tokens" is a common parameter.
func CredentialKeys() []string {
	return []string{"password", "passwd", "passphrase", "secret", "secrets", "token", "api_key", "access_key",
		"secret_key", "private_key", "credential", "credentials", "cookie", "cookies", "authorization", "session_id"}
}

// AppendFolded appends name folded to dst: lower case, without the separators '_', '-' and '.',
// so that "X-Api-Key", "api_key" and "apiKey" are one.
func AppendFolded(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			// Rare: lower the whole name as strings.ToLower does (the Kelvin sign is a k).
			name = strings.ToLower(name)
			break
		}
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '_' || c == '-' || c == '.':
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// IsCredentialName reports whether name (a header's, an argument's) names a credential: folded,
// it ends with one of CredentialKeys, folded.
func IsCredentialName(name string) bool {
	var nb, kb [64]byte
	folded := AppendFolded(nb[:0], name)
	for _, k := range CredentialKeys() {
		if bytes.HasSuffix(folded, AppendFolded(kb[:0], k)) {
			return true
		}
	}
	return false
}
