package server_test

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/storage/storagetest"
)

// TestPostgres runs the server's tests again with every env on a
// PostgreSQL schema of its own: the same behaviour on both backends.
// Left out are the tests that read the SQLite file's bytes.
func TestPostgres(t *testing.T) {
	storagetest.PostgresDSN(t) // skip, or fail, before running anything
	tests := map[string]func(*testing.T){
		"AdminAuth": TestAdminAuth, "AdminIntegrationCreate": TestAdminIntegrationCreate,
		"AdminIntegrationGet": TestAdminIntegrationGet, "AdminIntegrationList": TestAdminIntegrationList,
		"AdminIntegrationPatch": TestAdminIntegrationPatch, "AdminIntegrationDelete": TestAdminIntegrationDelete,
		"AdminRequestErrors": TestAdminRequestErrors, "AdminTokens": TestAdminTokens, "AdminAdmins": TestAdminAdmins,
		"AdminAudit": TestAdminAudit, "AdminConcurrentCreate": TestAdminConcurrentCreate, "AdminTokenExpiredListed": TestAdminTokenExpiredListed,
		"JWTAccessToken": TestJWTAccessToken, "JWTLifecycle": TestJWTLifecycle, "JWTIntrospectForged": TestJWTIntrospectForged,
		"JWTSigningKeyRotation": TestJWTSigningKeyRotation, "JWTRestart": TestJWTRestart, "SecretRotation": TestSecretRotation,
		"JWTSecretRotation": TestJWTSecretRotation, "JWTRotationStaleReplica": TestJWTRotationStaleReplica,
		"TokenClientCredentials": TestTokenClientCredentials, "TokenErrors": TestTokenErrors,
		"IntrospectActive": TestIntrospectActive, "IntrospectCaller": TestIntrospectCaller,
		"IntrospectInactive": TestIntrospectInactive, "IntrospectExpiry": TestIntrospectExpiry,
		"IntrospectDeletedIntegration": TestIntrospectDeletedIntegration, "Revoke": TestRevoke, "Metadata": TestMetadata,
		"ReplicasSeeRegenerationAtOnce": TestReplicasSeeRegenerationAtOnce, "ReadyzReportsDatabase": TestReadyzReportsDatabase,
		"ListDefaultLimit": TestListDefaultLimit, "ServerTokenLifetime": TestServerTokenLifetime,
		"RegenerateImmediate": TestRegenerateImmediate, "RegenerateGrace": TestRegenerateGrace,
		"RegenerateBadRequest": TestRegenerateBadRequest, "RegenerateGraceMidSecond": TestRegenerateGraceMidSecond,
		"RegenerateRace": TestRegenerateRace, "RevokeAcrossRegeneration": TestRevokeAcrossRegeneration,
		"RegenerateGraceRace": TestRegenerateGraceRace, "DeleteLargeIntegrationUnderLoad": TestDeleteLargeIntegrationUnderLoad,
		"SuspendIntegration": TestSuspendIntegration, "SuspendResourceServer": TestSuspendResourceServer,
		"SuspendDuringIssuance": TestSuspendDuringIssuance, "LastUsedOnEveryAuthentication": TestLastUsedOnEveryAuthentication,
		"CredentialRevokeClientSecret": TestCredentialRevokeClientSecret, "CredentialRevokeAdminToken": TestCredentialRevokeAdminToken,
		"CredentialRevokeAccessToken": TestCredentialRevokeAccessToken, "CredentialRevokeNotFound": TestCredentialRevokeNotFound,
		"CredentialRevokeAudit": TestCredentialRevokeAudit, "AuditFilters": TestAuditFilters,
		"AuditFilterErrors": TestAuditFilterErrors, "AuditUpdateChanges": TestAuditUpdateChanges,
		"AuthFailureAudit": TestAuthFailureAudit, "AuthFailureAuditBounded": TestAuthFailureAuditBounded,
		"EndGrace": TestEndGrace, "IntegrationSearch": TestIntegrationSearch, "IntegrationTokens": TestIntegrationTokens,
		"AdminKeylessIntegration": TestAdminKeylessIntegration, "PrivateKeyJWTMigration": TestPrivateKeyJWTMigration, "PrivateKeyJWTIssuanceCap": TestPrivateKeyJWTIssuanceCap,
		"PrivateKeyJWTAlgorithms": TestPrivateKeyJWTAlgorithms, "PrivateKeyJWTChecks": TestPrivateKeyJWTChecks,
		"PrivateKeyJWTEndpoints": TestPrivateKeyJWTEndpoints, "PrivateKeyJWTFailureLimits": TestPrivateKeyJWTFailureLimits,
		"PrivateKeyJWTRotation": TestPrivateKeyJWTRotation, "JWKSURIFetchAndCache": TestJWKSURIFetchAndCache,
		"PrivateKeyJWTEd25519Alg": TestPrivateKeyJWTEd25519Alg, "PrivateKeyJWTRegenerationRace": TestPrivateKeyJWTRegenerationRace,
		"AuthorizationMatrix": TestAuthorizationMatrix, "AdminTokenPermissions": TestAdminTokenPermissions,
		"LastOwner": TestLastOwner, "LastOwnerConcurrent": TestLastOwnerConcurrent,
		"DPoPBoundToken": TestDPoPBoundToken, "DPoPRequired": TestDPoPRequired, "DPoPProofChecks": TestDPoPProofChecks,
		"DPoPReplayAcrossReplicas": TestDPoPReplayAcrossReplicas, "ResourceIndicators": TestResourceIndicators,
		"IntrospectionAudience": TestIntrospectionAudience, "DPoPReplayAfterPurge": TestDPoPReplayAfterPurge,
		"DPoPRegenerationDuringIssuance": TestDPoPRegenerationDuringIssuance, "DPoPIssuerWithPath": TestDPoPIssuerWithPath,
	}
	for name, test := range tests {
		t.Run(name, test)
	}
}

// onPostgres reports whether t runs under TestPostgres. The test's name
// carries the backend, so tests need no shared switch and may run in
// parallel.
func onPostgres(t testing.TB) bool { return strings.HasPrefix(t.Name(), "TestPostgres/") }

// rawDB opens the env's database directly, read-only where the driver
// allows, for checks below the API.
func (e *env) rawDB() *sql.DB {
	e.t.Helper()
	driver, dsn := "sqlite3", "file:"+e.dbPath+"?mode=ro"
	if strings.HasPrefix(e.dbPath, "postgres://") {
		driver, dsn = "pgx", e.dbPath
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db
}
