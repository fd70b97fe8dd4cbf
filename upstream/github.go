package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
)

// Defaults of GitHub's bases; GitHub Enterprise Server sets its own.
const (
	GitHubAPIURL = "https://api.github.com"
	GitHubWebURL = "https://github.com"
)

// maxAPIBytes bounds an API answer read.
const maxAPIBytes = 1 << 20

// githubProvider signs users in with a GitHub OAuth app and asks the API
// who they are: the user, its primary verified e-mail, and the
// memberships the rules need.
type githubProvider struct {
	base
	endpoint oauth2.Endpoint
}

func newGitHub(cfg Config) *githubProvider {
	cfg.APIURL = strings.TrimSuffix(cmpOr(cfg.APIURL, GitHubAPIURL), "/")
	cfg.WebURL = strings.TrimSuffix(cmpOr(cfg.WebURL, GitHubWebURL), "/")
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"read:user", "user:email"}
		if cfg.Rules.needsOrgs() {
			cfg.Scopes = append(cfg.Scopes, "read:org")
		}
	}
	return &githubProvider{base: base{cfg: cfg}, endpoint: oauth2.Endpoint{
		AuthURL:   cfg.WebURL + "/login/oauth/authorize",
		TokenURL:  cfg.WebURL + "/login/oauth/access_token",
		AuthStyle: oauth2.AuthStyleInParams,
	}}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// AuthURL implements Provider.
func (p *githubProvider) AuthURL(ctx context.Context, a Attempt) (string, error) {
	conf := p.oauth2Config(p.endpoint, a.RedirectURI, p.cfg.Scopes)
	return conf.AuthCodeURL(a.State, append(p.authParams(), oauth2.S256ChallengeOption(a.Verifier))...), nil
}

// Refresh implements Provider (GitHub Apps with expiring user tokens
// issue refresh tokens; OAuth apps' tokens do not expire).
func (p *githubProvider) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return p.refresh(ctx, p.endpoint, refreshToken)
}

// CallbackIssuer implements Provider: GitHub names no issuer.
func (p *githubProvider) CallbackIssuer(context.Context) (string, bool, error) { return "", false, nil }

type githubUser struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

type githubEmail struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

type githubOrg struct {
	Login string `json:"login"`
}

type githubTeam struct {
	Slug         string    `json:"slug"`
	Organization githubOrg `json:"organization"`
}

// Identify implements Provider.
func (p *githubProvider) Identify(ctx context.Context, a Attempt, code string) (*Identity, error) {
	ctx, cancel := p.context(ctx)
	defer cancel()
	tok, err := p.exchange(ctx, p.oauth2Config(p.endpoint, a.RedirectURI, p.cfg.Scopes), a, code)
	if err != nil {
		return nil, err
	}
	var user githubUser
	if err := p.get(ctx, tok, "/user", &user); err != nil {
		return nil, err
	}
	if user.ID == 0 || user.Login == "" {
		return nil, badAnswer("GitHub's /user names no user")
	}
	id := &Identity{Subject: p.cfg.Name + ":" + strconv.FormatInt(user.ID, 10), Name: user.Name, PreferredUsername: user.Login, Token: tok}
	var emails []githubEmail
	if err := p.get(ctx, tok, "/user/emails", &emails); err != nil {
		return nil, err
	}
	for _, e := range emails {
		if e.Primary && e.Verified {
			id.Email = e.Email
		}
	}
	if len(p.cfg.Rules.Orgs) > 0 {
		var orgs []githubOrg
		if err := p.get(ctx, tok, "/user/orgs?per_page=100", &orgs); err != nil {
			return nil, err
		}
		for _, o := range orgs {
			id.Orgs = append(id.Orgs, o.Login)
		}
	}
	if len(p.cfg.Rules.Teams) > 0 {
		var teams []githubTeam
		if err := p.get(ctx, tok, "/user/teams?per_page=100", &teams); err != nil {
			return nil, err
		}
		for _, t := range teams {
			id.Teams = append(id.Teams, t.Organization.Login+"/"+t.Slug)
		}
	}
	return id, nil
}

// get calls the GitHub API with the user's token. A 401 or 403 (a
// suspended account, a revoked grant) refuses the sign-in.
func (p *githubProvider) get(ctx context.Context, tok *oauth2.Token, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.APIURL+path, nil)
	if err != nil {
		return unreachable("GitHub API %s: %v", path, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return unreachable("GitHub API %s: %v", path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return badAnswer("GitHub API %s answered %d: the account cannot sign in (suspended, or the grant was revoked)", path, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return unreachable("GitHub API %s answered %d", path, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBytes))
	if err != nil {
		return unreachable("GitHub API %s: %v", path, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badAnswer("GitHub API %s: %v", path, fmt.Errorf("unreadable answer: %w", err))
	}
	return nil
}
