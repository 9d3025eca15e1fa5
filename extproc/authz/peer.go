package authz

import "strings"

// Identity is the SPIFFE identity of a client certificate in Istio's form,
// spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT: agentgateway's source.identity.
type Identity struct {
	TrustDomain, Namespace, ServiceAccount string
}

// spiffeIdentity parses a URI SAN of Istio's SPIFFE form; ok is false for any other URI (then
// source.identity is not set).
func spiffeIdentity(uri string) (id Identity, ok bool) {
	rest, found := strings.CutPrefix(uri, "spiffe://")
	if !found {
		return Identity{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" || parts[0] == "" || parts[2] == "" || parts[4] == "" {
		return Identity{}, false
	}
	return Identity{TrustDomain: parts[0], Namespace: parts[2], ServiceAccount: parts[4]}, true
}

// identity returns the SPIFFE identity of the client certificate's first URI SAN; zero when it
// has none of that form.
func (in *Input) identity() Identity {
	id, _ := spiffeIdentity(in.Peer.URISAN)
	return id
}
