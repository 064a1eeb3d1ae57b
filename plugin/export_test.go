package plugin

// OpenSymbolStreams returns the number of engine symbol streams that
// Symbols calls on s hold open (for tests of stream cleanup).
func (s *Server) OpenSymbolStreams() int64 { return s.openSymbolStreams.Load() }
