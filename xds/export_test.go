package xds

// CachedGroups returns the node groups the snapshot cache keeps state of (a watch status, the
// node a client sent): those of clients connected now, and those of the groups served.
func CachedGroups(s *Server) []string { return s.cache.GetStatusKeys() }
