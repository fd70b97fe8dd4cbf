package upstream

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Rules say who may sign in through a provider. Several rules are OR-ed;
// no rule at all admits everyone the provider signs in. E-mail rules
// match only an address the provider marked verified.
type Rules struct {
	// Domains admit a verified e-mail address in one of these domains.
	Domains []string
	// Emails admit these verified addresses.
	Emails []string
	// Claims admit an ID token whose claim equals the value, or (an
	// array) contains it (oidc).
	Claims []ClaimRule
	// Orgs admit members of these GitHub organisations; Teams members of
	// these "org/team" teams; Users these GitHub accounts: numeric ids
	// (583231 or github:583231), or logins, which can be renamed and
	// registered again by someone else.
	Orgs, Teams, Users []string
}

// ClaimRule is one allow_claim rule.
type ClaimRule struct {
	Claim, Value string
}

// Empty reports whether there are no rules.
func (r Rules) Empty() bool {
	return len(r.Domains)+len(r.Emails)+len(r.Claims)+len(r.Orgs)+len(r.Teams)+len(r.Users) == 0
}

// needsOrgs reports whether a GitHub rule asks about memberships.
func (r Rules) needsOrgs() bool { return len(r.Orgs)+len(r.Teams) > 0 }

// Admit reports whether any rule lets the identity in. Names are
// compared as the systems that issue them define them, never with Unicode
// case folding (under which the Kelvin sign K is a k): a domain as its
// IDNA A-labels, an e-mail address's local part, organisations, teams and
// logins in ASCII, upper- and lower-case letters alike. A name that is
// not valid in that form matches nothing. The rules are expected
// normalised (see Normalized).
func (r Rules) Admit(id *Identity) bool {
	if r.Empty() {
		return true
	}
	if email, err := normalizeEmail(id.Email); id.Email != "" && err == nil {
		domain := email[strings.LastIndexByte(email, '@')+1:]
		if slices.Contains(r.Emails, email) || slices.Contains(r.Domains, domain) {
			return true
		}
	}
	for _, c := range r.Claims {
		if claimHas(id.Claims[c.Claim], c.Value) {
			return true
		}
	}
	for _, org := range id.Orgs {
		if containsASCIIFold(r.Orgs, org) {
			return true
		}
	}
	for _, team := range id.Teams {
		if containsASCIIFold(r.Teams, team) {
			return true
		}
	}
	if id.UserID != "" && slices.Contains(r.Users, userByID+id.UserID) {
		return true
	}
	return id.PreferredUsername != "" && isASCII(id.PreferredUsername) && slices.Contains(r.Users, userByLogin+asciiLower(id.PreferredUsername))
}

// Prefixes of normalised allow_users entries.
const (
	userByID    = "id:"
	userByLogin = "login:"
)

// normalizeUser is an allow_users entry as id:<number> (from 583231 or
// github:583231) or login:<lower-case login>.
func normalizeUser(u string) (string, error) {
	n := strings.TrimPrefix(u, "github:")
	if n != "" && strings.Trim(n, "0123456789") == "" {
		id, err := strconv.ParseUint(n, 10, 63)
		if err != nil || id == 0 {
			return "", errors.New("not a GitHub user id")
		}
		return userByID + strconv.FormatUint(id, 10), nil
	}
	if n != u || u == "" || strings.Contains(u, ":") || !isASCII(u) {
		return "", errors.New("expected a GitHub user id (583231 or github:583231) or an ASCII login")
	}
	return userByLogin + asciiLower(u), nil
}

// Logins are the allow_users entries that name logins, not ids.
func (r Rules) Logins() []string {
	var out []string
	for _, u := range r.Users {
		if login, ok := strings.CutPrefix(u, userByLogin); ok {
			out = append(out, login)
		}
	}
	return out
}

// Normalized returns the rules with domains as IDNA A-labels and e-mail
// addresses lower-cased, or an error naming a value that cannot be.
func (r Rules) Normalized() (Rules, error) {
	out := r
	out.Domains, out.Emails = make([]string, len(r.Domains)), make([]string, len(r.Emails))
	for i, d := range r.Domains {
		n, err := normalizeDomain(d)
		if err != nil {
			return Rules{}, fmt.Errorf("allow_domains %q: %w", d, err)
		}
		out.Domains[i] = n
	}
	for i, e := range r.Emails {
		n, err := normalizeEmail(e)
		if err != nil {
			return Rules{}, fmt.Errorf("allow_emails %q: %w", e, err)
		}
		out.Emails[i] = n
	}
	out.Users = make([]string, len(r.Users))
	for i, u := range r.Users {
		n, err := normalizeUser(u)
		if err != nil {
			return Rules{}, fmt.Errorf("allow_users %q: %w", u, err)
		}
		out.Users[i] = n
	}
	for option, names := range map[string][]string{"allow_orgs": r.Orgs, "allow_teams": r.Teams} {
		for _, n := range names {
			if !isASCII(n) {
				return Rules{}, fmt.Errorf("%s %q: GitHub names are ASCII", option, n)
			}
		}
	}
	return out, nil
}

// normalizeDomain is a domain name as IDNA A-labels, after lower-casing
// its ASCII letters only; strict (the registration profile), so that a
// name with characters a mail system would not deliver to (K, an
// upper-case Ü) is an error rather than mapped onto another name.
func normalizeDomain(d string) (string, error) {
	if d == "" || strings.ContainsAny(d, "@ ") {
		return "", errors.New("not a domain name")
	}
	a, err := idna.Registration.ToASCII(asciiLower(strings.TrimSuffix(d, ".")))
	if err != nil {
		return "", errors.New("not a valid domain name (IDNA)")
	}
	return a, nil
}

// normalizeEmail is an address with an ASCII local part, lower-cased,
// and its domain normalised; the domain follows the last '@'.
func normalizeEmail(e string) (string, error) {
	at := strings.LastIndexByte(e, '@')
	if at <= 0 {
		return "", errors.New("not an e-mail address")
	}
	local := e[:at]
	if !isASCII(local) {
		return "", errors.New("the part before @ is not ASCII")
	}
	domain, err := normalizeDomain(e[at+1:])
	if err != nil {
		return "", err
	}
	return asciiLower(local) + "@" + domain, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLower lower-cases A-Z only.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// containsASCIIFold reports whether list holds s, ASCII letters compared
// without regard to case; a name that is not ASCII matches nothing.
func containsASCIIFold(list []string, s string) bool {
	if !isASCII(s) {
		return false
	}
	return slices.ContainsFunc(list, func(e string) bool { return asciiLower(e) == asciiLower(s) })
}

// claimHas reports whether a claim's value is want, or an array holding it.
func claimHas(v any, want string) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v == want
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return claimHas(e, want) })
	case map[string]any:
		return false
	default: // numbers and booleans, as JSON writes them
		return fmt.Sprint(v) == want
	}
}
