package storage

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Integration is an OAuth client: a backend job or service that trades its
// key pair for access tokens. Name is unique and immutable.
type Integration struct {
	ID          int64
	Name        string
	Description string
	// Scopes the integration may be granted; asking for none grants all.
	Scopes []string
	// Audience values the integration may ask for.
	Audience []string
	// CanIntrospect marks a resource server, allowed to call introspection.
	CanIntrospect bool
	// TokenLifetimeSeconds overrides the server's token lifetime; nil
	// follows it, so changing the configured default reaches every
	// integration that never chose its own.
	TokenLifetimeSeconds *int64
	// TokenRatePerMinute caps the tokens it is issued a minute; nil
	// follows the server's integration_token_rate, 0 is no cap.
	TokenRatePerMinute *int64
	// Disabled suspends the integration: its key pairs and tokens are
	// kept but refused until it is enabled again. The store reports it;
	// server/oauth refuses.
	Disabled bool
	// TokenEndpointAuthMethod is one of AuthMethods. A private_key_jwt
	// integration authenticates with a JWT signed by a key in JWKS or at
	// JWKSURI (one of them is set), and its key pairs have no secret.
	TokenEndpointAuthMethod string
	// JWKS is the registered public key set, as ParseJWKS accepted it;
	// empty when none is registered.
	JWKS string
	// JWKSURI is where the public key set is fetched from instead.
	JWKSURI string
	// RequireDPoP issues tokens only to requests with a DPoP proof, bound
	// to the proof's key (RFC 9449).
	RequireDPoP bool
	// IntrospectionAudience limits what this resource server learns at
	// introspection to tokens whose audience holds one of these values
	// (RFC 7662 §4); empty sees every token.
	IntrospectionAudience []string
	CreatedBy             string
	CreatedAt             time.Time
	UpdatedAt             time.Time

	// KeyPair is the current pair. PreviousKeyPair is the pair it replaced,
	// present only while that pair's grace deadline is in the future.
	KeyPair         *KeyPair `gorm:"-"`
	PreviousKeyPair *KeyPair `gorm:"-"`
}

// KeyPair is a client ID and the hash of its secret. At most one pair of an
// integration has a nil ExpiresAt (the current one); a replaced pair works
// until ExpiresAt and is then as good as deleted.
type KeyPair struct {
	ID            int64
	IntegrationID int64
	ClientID      string
	SecretHash    []byte
	CreatedAt     time.Time
	LastUsedAt    *time.Time
	ExpiresAt     *time.Time
}

// NewKeyPair is a freshly generated key pair. ClientSecret exists only in
// this value: it is stored as a hash and never returned again.
type NewKeyPair struct {
	ClientID     string
	ClientSecret string
	CreatedAt    time.Time
	// PreviousExpiresAt is the replaced pair's grace deadline; nil when
	// nothing was replaced or the replaced pair was revoked at once (a
	// regeneration without grace), so no one reads a deadline into it.
	PreviousExpiresAt *time.Time
}

// Admin is a person allowed to use the admin API, as far as Role allows.
type Admin struct {
	ID        int64
	Name      string
	Role      Role
	CreatedAt time.Time
}

// BootstrapAdmin is the built-in admin that the configured bootstrap token
// acts as.
const BootstrapAdmin = "bootstrap"

// AdminToken describes an admin API token; the token itself is only ever
// returned by the call that made it.
type AdminToken struct {
	ID          string
	AdminID     int64
	Description string
	// Permissions narrow the token below its admin's role; nil follows
	// the role, whatever it is at the time of each request. See
	// EffectivePermissions.
	Permissions []Permission
	CreatedAt   time.Time
	ExpiresAt   *time.Time // nil: never
	LastUsedAt  *time.Time
}

// AuditEvent records who did what to which object, when and from where.
// Details never hold a secret.
type AuditEvent struct {
	ID         int64
	Time       time.Time
	ActorType  string
	Actor      string
	Action     string
	ObjectType string
	Object     string
	RemoteAddr string
	Details    map[string]any
}

// Actor is who performs a change; it is written to the audit log.
type Actor struct {
	Type       string // "admin", "integration", "system", "cli" (a command run on the database) or "anonymous" (failed sign-ins)
	Name       string
	RemoteAddr string
}

// Page asks for one page of a listing. Limit is clamped to 1..MaxPageLimit
// (0 means DefaultPageLimit); Token is a previous listing's NextToken.
type Page struct {
	Limit int
	Token string
}

const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

func (p Page) limit() int {
	switch {
	case p.Limit <= 0:
		return DefaultPageLimit
	case p.Limit > MaxPageLimit:
		return MaxPageLimit
	}
	return p.Limit
}

// cursor decodes the page token; an empty token starts at the beginning.
func (p Page) cursor() (string, error) {
	if p.Token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(p.Token)
	if err != nil || len(b) == 0 {
		return "", invalidf("page_token is not one this server issued")
	}
	return string(b), nil
}

func pageToken(cursor string) string { return base64.RawURLEncoding.EncodeToString([]byte(cursor)) }

// pageOrder is how a listing pages: ordered by a unique column, ascending
// or, when desc, descending. A page token holds the column's value in the
// last row of the page before; when integer, that value must be an integer.
type pageOrder struct {
	column  string
	desc    bool
	integer bool
	// thenID: column is a time that rows may share, and their ID orders
	// those; the page token holds both (timeCursor).
	thenID bool
	// then, with thenID, names a text column that orders rows sharing a
	// time instead of the ID (textTimeCursor).
	then string
	// sort, when set, names the order in the page token, for a listing
	// that has several: a token made for another order is refused.
	sort string
}

// findPage loads the page p of q's rows in order by, and returns the next
// page's token ("" after the last page). key is a row's value of
// by.column (its timeCursor, when by.thenID); op names the listing in
// errors. A token this server did not issue for this order is ErrInvalid,
// a database failure ErrUnavailable.
func findPage[R any](q *gorm.DB, p Page, by pageOrder, op string, key func(*R) string) ([]R, string, error) {
	q, err := pageQuery(q, p, by)
	if err != nil {
		return nil, "", err
	}
	var rows []R
	if err := q.Find(&rows).Error; err != nil {
		return nil, "", unavailable(op, err)
	}
	next := ""
	if len(rows) > p.limit() {
		rows = rows[:p.limit()]
		cursor := key(&rows[len(rows)-1])
		if by.sort != "" {
			cursor = by.sort + ":" + cursor
		}
		next = pageToken(cursor)
	}
	return rows, next, nil
}

// pageQuery is q narrowed to the page p in order by, with one row more
// than the page, whose presence says another page follows.
func pageQuery(q *gorm.DB, p Page, by pageOrder) (*gorm.DB, error) {
	after, err := p.cursor()
	if err != nil {
		return nil, err
	}
	if by.sort != "" && after != "" {
		var ok bool
		if after, ok = strings.CutPrefix(after, by.sort+":"); !ok {
			return nil, invalidf("page_token is not one this server issued for sort=%s", by.sort)
		}
	}
	dir, cmp := "", " > "
	if by.desc {
		dir, cmp = " DESC", " < "
	}
	order := by.column + dir
	tie := "id"
	if by.then != "" {
		tie = by.then
	}
	if by.thenID {
		order += ", " + tie + dir
	}
	if after != "" {
		switch {
		case by.thenID:
			var at time.Time
			var v any
			var ok bool
			if by.then != "" {
				at, v, ok = parseTextTimeCursor(after)
			} else {
				at, v, ok = parseTimeCursor(after)
			}
			if !ok {
				return nil, invalidf("page_token is not one this server issued")
			}
			// The bound on the time alone is what an index on it ranges
			// over; neither database ranges an index over a row value
			// whose second column the index does not hold.
			q = q.Where(by.column+cmp[:2]+"= ? AND ("+by.column+", "+tie+")"+cmp+"(?, ?)", at, at, v)
		case by.integer:
			n, err := strconv.ParseInt(after, 10, 64)
			if err != nil {
				return nil, invalidf("page_token is not one this server issued")
			}
			q = q.Where(by.column+cmp+"?", n)
		default:
			q = q.Where(by.column+cmp+"?", after)
		}
	}
	return q.Order(order).Limit(p.limit() + 1), nil
}

// IntegrationInput creates an integration.
type IntegrationInput struct {
	Name                 string
	Description          string
	Scopes               []string
	Audience             []string
	CanIntrospect        bool
	TokenLifetimeSeconds *int64
	TokenRatePerMinute   *int64
	// TokenEndpointAuthMethod is one of AuthMethods; "" is the first.
	TokenEndpointAuthMethod string
	// JWKS is a JSON Web Key Set of public keys (ParseJWKS); nil is none.
	JWKS                  json.RawMessage
	JWKSURI               string
	RequireDPoP           bool
	IntrospectionAudience []string
}

// IntegrationPatch changes the fields that are non-nil.
type IntegrationPatch struct {
	Description          *string
	Scopes               *[]string
	Audience             *[]string
	CanIntrospect        *bool
	TokenLifetimeSeconds *int64
	// ResetTokenLifetime drops the integration's own token lifetime, so it
	// follows the server's again; TokenLifetimeSeconds must then be nil.
	ResetTokenLifetime bool
	TokenRatePerMinute *int64
	// ResetTokenRate drops the integration's own token rate, as
	// ResetTokenLifetime does the lifetime.
	ResetTokenRate bool
	// Disabled suspends (true) or enables (false) the integration.
	Disabled *bool
	// TokenEndpointAuthMethod switches how the integration authenticates.
	// Switching to private_key_jwt deletes its key pairs' secrets: a
	// switch back needs a regeneration, so a secret that leaked before
	// the switch never works again.
	TokenEndpointAuthMethod *string
	// JWKS replaces the registered key set; a JSON null removes it.
	JWKS json.RawMessage
	// JWKSURI replaces the key set's URL; "" removes it.
	JWKSURI               *string
	RequireDPoP           *bool
	IntrospectionAudience *[]string
}

var (
	nameRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	scopeTokenRE = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,128}$`) // RFC 6749 §3.3
	audienceRE   = regexp.MustCompile(`^[\x21-\x7E]{1,256}$`)
)

// Limits on integration fields; the token lifetime bounds keep a typo from
// issuing year-long credentials.
const (
	MaxDescriptionLen       = 1024
	MaxScopes               = 100
	MaxAudience             = 20
	MinTokenLifetimeSeconds = 60
	MaxTokenLifetimeSeconds = 30 * 24 * 3600
	MaxGrace                = 30 * 24 * time.Hour
	// MaxTokenRatePerMinute matches the largest rate the configuration
	// accepts; beyond it a cap no longer caps anything.
	MaxTokenRatePerMinute = 1_000_000
)

// ValidName reports whether name is a valid integration or admin name.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// InvalidError is the error of input that breaks a rule. Reason says
// which rule, in words fit to show whoever sent the input; errors.Is
// reports it as ErrInvalid. Every ErrInvalid this package returns is one.
type InvalidError struct {
	Reason string
}

func (e *InvalidError) Error() string { return ErrInvalid.Error() + ": " + e.Reason }

// Is makes an *InvalidError match ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

func checkName(name string) error {
	if !ValidName(name) {
		return invalidf("name %q must match ^[a-z0-9][a-z0-9._-]{0,62}$", name)
	}
	return nil
}

func checkDescription(d string) error {
	if len(d) > MaxDescriptionLen {
		return invalidf("description is longer than %d bytes", MaxDescriptionLen)
	}
	return nil
}

// normalizeList checks every value against re and drops duplicates,
// keeping the first occurrence's order.
func normalizeList(field string, values []string, re *regexp.Regexp, maxN int, rule string) ([]string, error) {
	if len(values) > maxN {
		return nil, invalidf("%s has more than %d values", field, maxN)
	}
	out := make([]string, 0, len(values))
	seen := make(map[string]bool, len(values))
	for _, v := range values {
		if !re.MatchString(v) {
			return nil, invalidf("%s value %q is not %s", field, v, rule)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out, nil
}

func normalizeScopes(s []string) ([]string, error) {
	return normalizeList("scopes", s, scopeTokenRE, MaxScopes, "a scope token (RFC 6749 §3.3: printable ASCII without space, \" or \\, at most 128 characters)")
}

func normalizeAudience(a []string) ([]string, error) {
	return normalizeList("audience", a, audienceRE, MaxAudience, "printable ASCII without spaces, at most 256 characters")
}

func normalizeIntrospectionAudience(a []string) ([]string, error) {
	return normalizeList("introspection_audience", a, audienceRE, MaxAudience, "printable ASCII without spaces, at most 256 characters")
}

// empty reports whether p changes nothing.
func (p *IntegrationPatch) empty() bool { return reflect.ValueOf(*p).IsZero() }

func checkLifetime(n *int64) error {
	if n != nil && (*n < MinTokenLifetimeSeconds || *n > MaxTokenLifetimeSeconds) {
		return invalidf("token_lifetime_seconds must be between %d and %d", MinTokenLifetimeSeconds, MaxTokenLifetimeSeconds)
	}
	return nil
}

func checkRate(n *int64) error {
	if n != nil && (*n < 0 || *n > MaxTokenRatePerMinute) {
		return invalidf("token_rate_per_minute must be between 0 (no cap) and %d, or null (the server's default)", MaxTokenRatePerMinute)
	}
	return nil
}

// joinList stores a list of scopes or audience values in one column.
func joinList(v []string) string { return strings.Join(v, " ") }

// splitList undoes joinList. Stored values hold no white space (see
// normalizeList), so strings.Fields gives them back as they were, and ""
// an empty list, never nil: it is [] in JSON (TestAdminIntegrationCreate).
func splitList(s string) []string { return strings.Fields(s) }
