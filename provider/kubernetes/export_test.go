package kubernetes

// ClientQPS returns the client-side request rate p's clients are held to (negative: none).
func ClientQPS(p *Provider) float32 { return p.mgr.GetConfig().QPS }

// ServiceMatters is p.serviceMatters: whether a change of the Service obj causes a pass.
func ServiceMatters(p *Provider, obj any) bool { return p.serviceMatters(obj) }

// NamespaceMatters is p.namespaceMatters: whether the Namespace obj made or deleted causes a pass.
func NamespaceMatters(p *Provider, obj any) bool { return p.namespaceMatters(obj) }

// NamespaceChangeMatters is p.namespaceChangeMatters: whether a Namespace update causes a pass.
func NamespaceChangeMatters(p *Provider, old, cur any) bool {
	return p.namespaceChangeMatters(old, cur)
}
