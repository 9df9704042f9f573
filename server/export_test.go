package server

import "slices"

// Patterns returns the patterns routes registered, in order.
func (s *Server) Patterns() []string { return slices.Clone(s.patterns) }

// OpenAPIYAML is the OpenAPI document as written.
var OpenAPIYAML = openapiYAML

// OpenAPIJSON is the OpenAPI document as a server with issuer serves it.
var OpenAPIJSON = openapiJSON
