package server_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/oapi-codegen/nullable"

	"github.com/latchkey/latchkey/apiclient"
)

// TestGeneratedClientWalkThrough runs the life of a key pair through the
// client generated from the OpenAPI document (apiclient), against a real
// server: what a typed client in any language would do. The harness
// validates every exchange against the document as well.
func TestGeneratedClientWalkThrough(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	ctx := context.Background()
	admin, err := apiclient.NewClientWithResponses(e.srv.URL, apiclient.WithRequestEditorFn(
		func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+testBootstrap)
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	// The OAuth endpoints take the integration's credentials instead.
	public, err := apiclient.NewClientWithResponses(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	basic := func(kp apiclient.CreatedKeyPair) apiclient.RequestEditorFn {
		return func(_ context.Context, r *http.Request) error {
			r.SetBasicAuth(url.QueryEscape(kp.ClientId), url.QueryEscape(kp.ClientSecret.MustGet()))
			return nil
		}
	}

	scopes := apiclient.Scopes{"invoices:read"}
	created, err := admin.CreateIntegrationWithResponse(ctx, apiclient.IntegrationCreate{Name: "billing-job", Scopes: &scopes})
	if err != nil || created.JSON201 == nil {
		t.Fatalf("create: %v, status %d: %s", err, created.StatusCode(), created.Body)
	}
	job := created.JSON201.KeyPair
	jobSecret := job.ClientSecret.MustGet()
	yes := true
	created, err = admin.CreateIntegrationWithResponse(ctx, apiclient.IntegrationCreate{Name: "invoices-api", CanIntrospect: &yes})
	if err != nil || created.JSON201 == nil {
		t.Fatalf("create the resource server: %v, status %d: %s", err, created.StatusCode(), created.Body)
	}
	rs := created.JSON201.KeyPair

	// client_secret_post: the credentials in the form body.
	issued, err := public.IssueTokenWithFormdataBodyWithResponse(ctx, apiclient.TokenRequest{
		GrantType: apiclient.ClientCredentials, ClientId: &job.ClientId, ClientSecret: &jobSecret,
	})
	if err != nil || issued.JSON200 == nil {
		t.Fatalf("token: %v, status %d: %s", err, issued.StatusCode(), issued.Body)
	}
	if got := *issued.JSON200.Scope; got != "invoices:read" {
		t.Errorf("token scope %q, want invoices:read", got)
	}
	token := issued.JSON200.AccessToken

	introspect := func() apiclient.Introspection {
		t.Helper()
		r, err := public.IntrospectTokenWithFormdataBodyWithResponse(ctx, apiclient.IntrospectionRequest{Token: token}, basic(rs))
		if err != nil || r.JSON200 == nil {
			t.Fatalf("introspect: %v, status %d: %s", err, r.StatusCode(), r.Body)
		}
		return *r.JSON200
	}
	if in := introspect(); !in.Active || in.Sub == nil || *in.Sub != "billing-job" {
		t.Errorf("introspection %+v, want active for billing-job", in)
	}

	regen, err := admin.RegenerateKeyPairWithResponse(ctx, "billing-job", apiclient.KeyPairRegenerate{})
	if err != nil || regen.JSON201 == nil {
		t.Fatalf("regenerate: %v, status %d: %s", err, regen.StatusCode(), regen.Body)
	}
	if regen.JSON201.ClientId == job.ClientId {
		t.Errorf("regenerated %+v: want a new client ID", regen.JSON201)
	}
	if !regen.JSON201.PreviousExpiresAt.IsNull() {
		t.Errorf("previous_expires_at %v, want null: the old pair was revoked at once", regen.JSON201.PreviousExpiresAt)
	}
	if in := introspect(); in.Active {
		t.Errorf("the old pair's token after regeneration: %+v, want inactive", in)
	}

	// A PATCH sets a field, and null puts it back to the server's default.
	rate := 5
	patched, err := admin.UpdateIntegrationWithResponse(ctx, "billing-job", apiclient.IntegrationUpdate{TokenRatePerMinute: nullable.NewNullableWithValue(rate)})
	if err != nil || patched.JSON200 == nil || patched.JSON200.TokenRatePerMinute.MustGet() != rate {
		t.Fatalf("set the token rate: %v, status %d: %s", err, patched.StatusCode(), patched.Body)
	}
	patched, err = admin.UpdateIntegrationWithResponse(ctx, "billing-job", apiclient.IntegrationUpdate{TokenRatePerMinute: nullable.NewNullNullable[int]()})
	if err != nil || patched.JSON200 == nil || !patched.JSON200.TokenRatePerMinute.IsNull() {
		t.Fatalf("reset the token rate: %v, status %d: %s", err, patched.StatusCode(), patched.Body)
	}

	list, err := admin.ListIntegrationsWithResponse(ctx, &apiclient.ListIntegrationsParams{})
	if err != nil || list.JSON200 == nil {
		t.Fatalf("list: %v, status %d: %s", err, list.StatusCode(), list.Body)
	}
	var names []string
	for _, ig := range list.JSON200.Items {
		names = append(names, ig.Name)
	}
	if len(names) != 2 || names[0] != "billing-job" || names[1] != "invoices-api" {
		t.Errorf("listed %v, want billing-job and invoices-api", names)
	}

	del, err := admin.DeleteIntegrationWithResponse(ctx, "billing-job")
	if err != nil || del.StatusCode() != http.StatusNoContent {
		t.Fatalf("delete: %v, status %d: %s", err, del.StatusCode(), del.Body)
	}
	got, err := admin.GetIntegrationWithResponse(ctx, "billing-job")
	if err != nil || got.JSON404 == nil || got.JSON404.Error != "not_found" {
		t.Errorf("get after delete: %v, status %d: %s", err, got.StatusCode(), got.Body)
	}
}
