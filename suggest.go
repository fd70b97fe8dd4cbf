package oauth2server

import "fmt"

// Subdirectives of each block, for "did you mean" (see unknownOption; a
// test checks that every one is recognised).
var (
	handlerOptions = []string{"issuer", "resource", "resource_name", "signing_secret", "signing_key", "signing_key_rotation",
		"signing_key_prepublish", "storage", "storage_key", "sweep_interval", "health_path", "scopes", "scope", "enforce_scopes",
		"access_token_lifetime", "refresh_token_lifetime", "authorization_code_lifetime", "clock_skew", "session_lifetime",
		"refresh_reuse_grace", "refresh_family_lifetime", "user", "login", "user_from", "sign_in_path", "client",
		"dynamic_registration", "unused_client_ttl", "client_id_metadata_documents", "public", "require_scope", "allow_tools",
		"rate_limit_per_user", "ipv6_limit_prefix", "root_aliases", "pass_token", "require_dpop", "dpop_nonce", "cors", "templates", "enterprise_idp", "workload_issuer"}
	clientOptions = []string{"secret", "name", "redirect_uri", "scopes", "grant_types", "introspect", "public", "trusted",
		"token_endpoint_auth_method", "jwks_file", "jwks_uri"}
	loginOptions = []string{"issuer", "client_id", "client_secret", "label", "api_url", "web_url", "scopes", "allow_domains",
		"allow_emails", "allow_orgs", "allow_teams", "allow_users", "pass_upstream_token", "allow_claim"}
	registrationOptions = []string{"initial_access_token", "allow_client_credentials", "always_return_client_secret", "rate_limit"}
)

// unknownOption is the message for an unrecognised subdirective, with the
// closest known one when a typo is likely.
func unknownOption(opt string, known []string) string {
	msg := fmt.Sprintf("unrecognized subdirective %q", opt)
	best, bestDistance := "", len(opt)/2+1 // more edits than half the word: no guess
	for _, k := range known {
		if d := editDistance(opt, k); d < bestDistance {
			best, bestDistance = k, d
		}
	}
	if best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return msg
}

// editDistance is the Levenshtein distance of two short ASCII words.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
