package xds

import "time"

// CachedGroups returns the node groups the snapshot cache keeps state of (a watch status, the
// node a client sent): those of clients connected now, and those of the groups served.
func CachedGroups(s *Server) []string { return s.cache.GetStatusKeys() }

// HasSnapshot reports whether the snapshot cache holds a snapshot of group.
func HasSnapshot(s *Server, group string) bool {
	_, err := s.cache.GetSnapshot(group)
	return err == nil
}

// SetClock makes now the server's clock.
func SetClock(s *Server, now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// RemovedGrace is removedGrace.
const RemovedGrace = removedGrace
