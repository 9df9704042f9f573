package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/latchkey/latchkey/storage"
)

// MaxBodyBytes caps every request body, on the OAuth and admin APIs alike.
const MaxBodyBytes = 1 << 20

// errorBody is the error object of the admin API, and also the shape of
// RFC 6749 §5.2 errors that the OAuth endpoints write themselves.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// Permission is what an insufficient_permissions answer lacked, for
	// a client (the dashboard) to name it in its own words.
	Permission storage.Permission `json:"permission,omitempty"`
}

// writeJSON writes v with status. API responses carry credentials or
// per-caller data, so nothing is cacheable unless a handler says otherwise.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes an error object. The description often quotes what
// the client sent (a name, an ID from the path), so credentials in it are
// redacted: an error body ends up in logs and bug reports.
func writeError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, errorBody{Error: code, Description: redact(description)})
}

// errTooLarge reports whether err came from a body over MaxBodyBytes.
func errTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// decodeJSON reads exactly one JSON object into dst, rejecting unknown
// fields, trailing data and bodies over MaxBodyBytes. When optional is true
// an empty body leaves dst untouched. The error it returns is ready to show
// to the client.
func decodeJSON(r *http.Request, dst any, optional bool) (status int, err error) {
	// read keeps what the decoder read, to name an unknown field: the
	// decoder's error for one has no type of its own.
	var read bytes.Buffer
	dec := json.NewDecoder(io.TeeReader(r.Body, &read))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			if optional {
				return 0, nil
			}
			return http.StatusBadRequest, errors.New("request body must be a JSON object")
		case errTooLarge(err):
			return http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", MaxBodyBytes)
		case errors.As(err, &syn):
			return http.StatusBadRequest, fmt.Errorf("request body is not valid JSON (at byte %d)", syn.Offset)
		case errors.As(err, &typ):
			if typ.Field == "" {
				return http.StatusBadRequest, errors.New("request body must be a JSON object")
			}
			return http.StatusBadRequest, fmt.Errorf("field %q must be %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return http.StatusBadRequest, errors.New("request body is truncated JSON")
		}
		if key, ok := unknownField(read.Bytes(), reflect.TypeOf(dst).Elem()); ok {
			return http.StatusBadRequest, fmt.Errorf("unknown field %q", key)
		}
		return http.StatusBadRequest, errors.New("request body is not valid JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if errTooLarge(err) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", MaxBodyBytes)
		}
		return http.StatusBadRequest, errors.New("request body must hold a single JSON object")
	}
	return 0, nil
}

// unknownField returns the first key of the JSON object at the start of
// body that names no field of the struct type t, as encoding/json matches
// them: by a field's json tag name or else its Go name, ignoring case
// (bytes.EqualFold, as encoding/json does), through embedded structs. Only
// the top-level keys are looked at: request bodies are flat.
func unknownField(body []byte, t reflect.Type) (string, bool) {
	known := jsonFieldNames(t)
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, _ := tok.(string)
		if !slices.ContainsFunc(known, func(name string) bool { return strings.EqualFold(name, key) }) {
			return key, true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

// jsonFieldNames lists the object keys encoding/json decodes into the
// struct type t.
func jsonFieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			names = append(names, jsonFieldNames(ft)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "int", "int64", "int32":
		return "an integer"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "of another type"
}

// limitBody rejects a declared oversize body at once and caps the rest, so
// a handler reading past the limit gets an *http.MaxBytesError. The OAuth
// endpoints' limit is MaxOAuthBodyBytes, everything else's MaxBodyBytes.
// Deciding here, outermost but for observe, means an oversize upload is
// refused before it can take one of the slots for large bodies.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(MaxBodyBytes)
		if strings.HasPrefix(r.URL.Path, "/oauth2/") {
			limit = MaxOAuthBodyBytes
		}
		if r.ContentLength > limit {
			writeBodyTooLarge(w, limit)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// writeBodyTooLarge answers a body over limit with 413 and the error
// object (the RFC 6749 §5.2 shape on the OAuth endpoints), and closes the
// connection rather than read the rest of the body.
func writeBodyTooLarge(w http.ResponseWriter, limit int64) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, "invalid_request",
		fmt.Sprintf("request body is larger than %d bytes", limit))
}

// jsonMuxErrors makes the mux's own 404 and 405 answers JSON error objects
// like every other error, keeping its Allow header.
func jsonMuxErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			infoFrom(r.Context()).route = pattern
			mux.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(&muxErrorWriter{ResponseWriter: w}, r)
	})
}

type muxErrorWriter struct {
	http.ResponseWriter
	replaced bool
}

func (m *muxErrorWriter) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		m.replaced = true
		writeError(m.ResponseWriter, code, "not_found", "no such endpoint")
	case http.StatusMethodNotAllowed:
		m.replaced = true
		writeError(m.ResponseWriter, code, "method_not_allowed", "method not allowed; see the Allow header")
	default:
		m.ResponseWriter.WriteHeader(code)
	}
}

func (m *muxErrorWriter) Write(b []byte) (int, error) {
	if m.replaced {
		return len(b), nil
	}
	return m.ResponseWriter.Write(b)
}
