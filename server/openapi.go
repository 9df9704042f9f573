package server

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"gopkg.in/yaml.v3"
)

// openapiYAML is the OpenAPI 3.1 description of every route in routes.go,
// written as YAML to be read and reviewed. The server's tests validate
// every request they make and every answer they get against it
// (openapi_test.go), and hold its operations and the routes to one set.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON turns openapiYAML into the JSON that GET /admin/openapi.json
// serves, with servers naming issuer. It fails only on a broken document,
// which is a build mistake.
func openapiJSON(issuer string) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	doc["servers"] = []any{map[string]any{
		"url":         issuer,
		"description": "The issuer. With admin_listen set, /admin/* and /metrics answer on that address instead.",
	}}
	b, err := json.Marshal(doc)
	if err != nil {
		// yaml.v3 decodes a mapping with a key that is not a string
		// (an unquoted 200) into a map json cannot encode.
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return b, nil
}

// handleOpenAPI serves the OpenAPI document without authentication: client
// generators fetch it as they are, and it holds nothing that the README
// does not (the issuer aside).
func (s *Server) handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(s.openapi)
	})
}
