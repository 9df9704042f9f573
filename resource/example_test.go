package resource_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/latchkey/latchkey/resource"
)

// An invoices API that accepts latchkey tokens meant for it, with the
// invoices:read scope.
func Example() {
	v, err := resource.New(resource.Options{
		Issuer:   "https://auth.example.com",     // latchkey's `issuer`
		Audience: "https://invoices.example.com", // this API, in the integrations' `audience`
		Scopes:   []string{"invoices:read"},
		// For opaque tokens: the key pair of an integration with
		// can_introspect. Without it only JWTs are accepted.
		ClientID:     os.Getenv("LATCHKEY_CLIENT_ID"),
		ClientSecret: os.Getenv("LATCHKEY_CLIENT_SECRET"),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/invoices", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := resource.FromContext(r.Context())
		fmt.Fprintf(w, "invoices for %s\n", c.Subject)
	})))

	// In the API: log.Fatal(http.ListenAndServe(":8081", mux)). Here, a
	// request without a token, which is told how to authenticate:
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/invoices", nil))
	fmt.Println(rec.Code, rec.Header().Values("WWW-Authenticate"))
	// Output: 401 [Bearer DPoP algs="ES256 EdDSA RS256 PS256"]
}
