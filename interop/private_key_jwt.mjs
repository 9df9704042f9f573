// Gets a client-credentials token from latchkey with oauth4webapi's own
// private_key_jwt client authentication, unmodified: discovery from the
// issuer, an assertion it signs itself, and its response checks.
//
// Environment: ISSUER (latchkey's issuer URL), CLIENT_ID, KEY_FILE (the
// client's private JWK, with kid and alg), SCOPE (optional). Prints the
// token response as JSON.
import { readFileSync } from 'node:fs'
import * as oauth from 'oauth4webapi'

const issuer = new URL(process.env.ISSUER)
// Plain http is for the test's loopback server only; it is an option of
// the library, not a change to it.
const insecure = issuer.protocol === 'http:' ? { [oauth.allowInsecureRequests]: true } : {}

const jwk = JSON.parse(readFileSync(process.env.KEY_FILE, 'utf8'))
const algorithms = {
  ES256: { name: 'ECDSA', namedCurve: 'P-256' },
  EdDSA: { name: 'Ed25519' },
  PS256: { name: 'RSA-PSS', hash: 'SHA-256' },
  RS256: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
}
const { kid, alg, ...material } = jwk
const key = await crypto.subtle.importKey('jwk', material, algorithms[alg], false, ['sign'])

const as = await oauth
  // RFC 8414 metadata, not OpenID Connect's.
  .discoveryRequest(issuer, { ...insecure, algorithm: 'oauth2' })
  .then((response) => oauth.processDiscoveryResponse(issuer, response))
const client = { client_id: process.env.CLIENT_ID }
const params = new URLSearchParams()
if (process.env.SCOPE) params.set('scope', process.env.SCOPE)

const response = await oauth.clientCredentialsGrantRequest(
  as, client, oauth.PrivateKeyJwt({ key, kid }), params, insecure)
const result = await oauth.processClientCredentialsResponse(as, client, response)
process.stdout.write(JSON.stringify(result) + '\n')
