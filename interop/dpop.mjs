// Gets a DPoP-bound client-credentials token from latchkey with
// oauth4webapi's own DPoP support, unmodified, then calls an API protected
// by latchkey's resource package with it: the library makes both proofs
// with a key pair it generates and never shows anyone.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_SECRET (client_secret_basic),
// RESOURCE_URL (the API to call). Prints {token_type, status, body} as
// JSON: the token response's type and the API's answer.
import * as oauth from 'oauth4webapi'

const issuer = new URL(process.env.ISSUER)
const resource = new URL(process.env.RESOURCE_URL)
// Plain http is for the test's loopback servers only; it is an option of
// the library, not a change to it.
const insecure = issuer.protocol === 'http:' ? { [oauth.allowInsecureRequests]: true } : {}

const as = await oauth
  .discoveryRequest(issuer, { ...insecure, algorithm: 'oauth2' })
  .then((response) => oauth.processDiscoveryResponse(issuer, response))
const client = { client_id: process.env.CLIENT_ID }
const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))

const response = await oauth.clientCredentialsGrantRequest(
  as, client, oauth.ClientSecretBasic(process.env.CLIENT_SECRET), new URLSearchParams(), { ...insecure, DPoP })
const token = await oauth.processClientCredentialsResponse(as, client, response)

const api = await oauth.protectedResourceRequest(
  token.access_token, 'GET', resource, new Headers(), null, { ...insecure, DPoP })
process.stdout.write(JSON.stringify({ token_type: token.token_type, status: api.status, body: await api.text() }) + '\n')
