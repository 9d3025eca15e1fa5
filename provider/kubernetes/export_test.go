package kubernetes

// ClientQPS returns the client-side request rate p's clients are held to (negative: none).
func ClientQPS(p *Provider) float32 { return p.mgr.GetConfig().QPS }
