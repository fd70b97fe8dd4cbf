package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
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
	userID := strconv.FormatInt(user.ID, 10)
	id := &Identity{Subject: p.cfg.Name + ":" + userID, UserID: userID, Name: user.Name, PreferredUsername: user.Login, Token: tok}
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
		err := p.getAll(ctx, tok, "/user/orgs?per_page=100", func(page []byte) error {
			var orgs []githubOrg
			if err := json.Unmarshal(page, &orgs); err != nil {
				return err
			}
			for _, o := range orgs {
				id.Orgs = append(id.Orgs, o.Login)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(p.cfg.Rules.Teams) > 0 {
		err := p.getAll(ctx, tok, "/user/teams?per_page=100", func(page []byte) error {
			var teams []githubTeam
			if err := json.Unmarshal(page, &teams); err != nil {
				return err
			}
			for _, t := range teams {
				id.Teams = append(id.Teams, t.Organization.Login+"/"+t.Slug)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return id, nil
}

// maxAPIPages bounds the pages of one listing followed (100 items each).
const maxAPIPages = 50

// getAll reads every page of a listing, following the Link header's
// rel="next" within the API's own base; more than maxAPIPages pages
// refuses the sign-in rather than deciding on part of the list.
func (p *githubProvider) getAll(ctx context.Context, tok *oauth2.Token, path string, page func([]byte) error) error {
	next := p.cfg.APIURL + path
	for range maxAPIPages {
		var body json.RawMessage
		link, err := p.fetch(ctx, tok, next, &body)
		if err != nil {
			return err
		}
		if err := page(body); err != nil {
			return badAnswer("GitHub API %s: unreadable answer: %v", path, err)
		}
		if next = nextLink(link); next == "" {
			return nil
		}
		if !strings.HasPrefix(next, p.cfg.APIURL+"/") {
			return badAnswer("GitHub API %s: the next page is not on the API", path)
		}
	}
	return badAnswer("GitHub API %s: more than %d pages", path, maxAPIPages)
}

// nextLink is the URL of a Link header's rel="next" (RFC 8288), or "".
func nextLink(header string) string {
	for _, part := range strings.Split(header, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		for _, param := range strings.Split(params, ";") {
			name, value, _ := strings.Cut(strings.TrimSpace(param), "=")
			if strings.EqualFold(strings.TrimSpace(name), "rel") && slices.Contains(strings.Fields(strings.ToLower(strings.Trim(strings.TrimSpace(value), `"`))), "next") {
				return target[1 : len(target)-1]
			}
		}
	}
	return ""
}

// get calls the GitHub API with the user's token. A 401 or 403 (a
// suspended account, a revoked grant) refuses the sign-in.
func (p *githubProvider) get(ctx context.Context, tok *oauth2.Token, path string, v any) error {
	_, err := p.fetch(ctx, tok, p.cfg.APIURL+path, v)
	return err
}

// fetch is get of a whole URL; it returns the answer's Link header.
func (p *githubProvider) fetch(ctx context.Context, tok *oauth2.Token, url string, v any) (string, error) {
	path := strings.TrimPrefix(url, p.cfg.APIURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", unreachable("GitHub API %s: %v", path, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", unreachable("GitHub API %s: %v", path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", badAnswer("GitHub API %s answered %d: the account cannot sign in (suspended, or the grant was revoked)", path, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return "", unreachable("GitHub API %s answered %d", path, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBytes))
	if err != nil {
		return "", unreachable("GitHub API %s: %v", path, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return "", badAnswer("GitHub API %s: %v", path, fmt.Errorf("unreadable answer: %w", err))
	}
	return resp.Header.Get("Link"), nil
}
