package dpop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/dpop"
)

// A client calls an API with a DPoP-bound token: a fresh proof for each
// request, signed with the key the token is bound to.
func ExampleNewProof() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // kept for the token's life
	if err != nil {
		log.Fatal(err)
	}
	token := "lk_at_…" // from /oauth2/token, requested with a proof by the same key
	req, _ := http.NewRequest("GET", "https://invoices.example.com/v1/invoices?page=2", nil)
	proof, err := dpop.NewProof(key, req.Method, req.URL.String(), token, "", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "DPoP "+token)
	req.Header.Set("DPoP", proof)

	// What the API checks (the resource package does all of it):
	p, err := dpop.Verify(proof, dpop.VerifyOptions{
		Method: "GET", URL: "https://invoices.example.com/v1/invoices", AccessToken: token,
	})
	if err != nil {
		log.Fatal(err)
	}
	jkt, _ := dpop.Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	fmt.Println(p.Thumbprint == jkt) // the token's cnf.jkt must be this
	// Output: true
}
