package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth2",
		Usage: "<command> [--issuer <url>] [--json] [--address <admin> | --config <file> | --storage <file>]",
		Short: "Manages the oauth2_server authorization servers: clients, grants, keys, tokens, backups",
		Long: `
Talks to the running Caddy's admin API (admin.api.oauth2_server), found the
way 'caddy reload' finds it: --address, or the admin address of --config, or
the default localhost:2019. With --storage <file> it opens a storage file
itself instead (when Caddy is not running: the file is locked while it
is), for its one authorization server or the one --issuer names; listing
commands open it read-only, and Caddyfile clients are not known there.

When several oauth2_server handlers run, --issuer selects one.
Tables by default, the API's JSON with --json.
`,
		CobraFunc: addCommands,
	})
}

// cli is one invocation: how to reach the API, and the output mode.
type cli struct {
	address, config, adapter, issuer, storagePath string
	json                                          bool
	out                                           io.Writer
}

func addCommands(root *cobra.Command) {
	c := &cli{out: os.Stdout}
	f := root.PersistentFlags()
	f.StringVar(&c.address, "address", "", "The admin API's address")
	f.StringVarP(&c.config, "config", "c", "", "A config file, to find the admin API's address")
	f.StringVarP(&c.adapter, "adapter", "a", "", "The config file's adapter")
	f.StringVar(&c.issuer, "issuer", "", "The issuer of the authorization server (needed when several run, and with --storage)")
	f.StringVar(&c.storagePath, "storage", "", "Open this storage file instead of asking the running Caddy")
	f.BoolVar(&c.json, "json", false, "Print JSON instead of tables")

	// An argument that starts with "-" (a key id, a token) is read as
	// flags unless it follows "--"; say so.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (an argument that starts with \"-\" goes after \"--\", as in: caddy oauth2 keys retire -- -AbC)", err)
	})

	run := func(writes bool, fn func(args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			c.out = cmd.OutOrStdout()
			if c.storagePath != "" {
				closeFile, err := c.openStorage(writes)
				if err != nil {
					return err
				}
				defer closeFile()
			}
			return fn(args)
		}
	}

	root.AddCommand(&cobra.Command{Use: "servers", Short: "Lists the running authorization servers", Args: cobra.NoArgs,
		RunE: run(false, func([]string) error { return c.servers() })})

	clients := &cobra.Command{Use: "clients", Short: "Lists the clients (Caddyfile, registered, metadata documents)", Args: cobra.NoArgs,
		RunE: run(false, func([]string) error { return c.clients() })}
	var add endpoints.NewClient
	addCmd := &cobra.Command{Use: "add --name <name> [--grant-type <type>]... [--scope <scope>]... [--redirect-uri <uri>]...",
		Short: "Creates a client; its secret is printed once", Args: cobra.NoArgs,
		RunE: run(true, func([]string) error { return c.addClient(add) })}
	addCmd.Flags().StringVar(&add.Name, "name", "", "The client's name (required)")
	addCmd.Flags().StringArrayVar(&add.GrantTypes, "grant-type", nil, "A grant type: client_credentials for a machine client; default authorization_code and refresh_token")
	addCmd.Flags().StringArrayVar(&add.RedirectURIs, "redirect-uri", nil, "A redirect URI (with authorization_code)")
	var scopes []string
	addCmd.Flags().StringArrayVar(&scopes, "scope", nil, "A scope the client may use")
	addCmd.Flags().StringVar(&add.AuthMethod, "auth-method", "", "client_secret_basic (default), client_secret_post, private_key_jwt (default with keys), or none")
	var jwksFile string
	addCmd.Flags().StringVar(&jwksFile, "jwks-file", "", "A file holding the client's public keys (a JWK Set), for private_key_jwt")
	addCmd.Flags().StringVar(&add.JWKSURI, "jwks-uri", "", "The https URL where the client publishes its public keys, for private_key_jwt")
	addCmd.PreRunE = func(*cobra.Command, []string) error {
		add.Scope = strings.Join(scopes, " ")
		if jwksFile == "" {
			return nil
		}
		raw, err := os.ReadFile(jwksFile)
		if err != nil {
			return fmt.Errorf("--jwks-file: %w", err)
		}
		if !json.Valid(raw) {
			return fmt.Errorf("--jwks-file: %s is not JSON", jwksFile)
		}
		add.JWKS = raw
		return nil
	}
	clients.AddCommand(addCmd)
	clients.AddCommand(&cobra.Command{Use: "delete <client_id>", Short: "Deletes a client, revoking its grants and live tokens", Args: cobra.ExactArgs(1),
		RunE: run(true, func(args []string) error { return c.deleteClient(args[0]) })})
	root.AddCommand(clients)

	var user, client, grant string
	grants := &cobra.Command{Use: "grants [--user <user>] [--client <client_id>]", Short: "Lists who granted which app what", Args: cobra.NoArgs,
		RunE: run(false, func([]string) error { return c.grants(user, client) })}
	grants.Flags().StringVar(&user, "user", "", "Only this user's grants")
	grants.Flags().StringVar(&client, "client", "", "Only this client's grants")
	root.AddCommand(grants)
	revoke := &cobra.Command{Use: "revoke --grant <id> | --user <user> | --client <client_id>",
		Short: "Revokes grants: refresh tokens, live access tokens and remembered consent", Args: cobra.NoArgs,
		RunE: run(true, func([]string) error { return c.revoke(grant, user, client) })}
	revoke.Flags().StringVar(&grant, "grant", "", "The grant's id (from 'grants')")
	revoke.Flags().StringVar(&user, "user", "", "Everything of this user")
	revoke.Flags().StringVar(&client, "client", "", "Everything of this client")
	root.AddCommand(revoke)

	keys := &cobra.Command{Use: "keys", Short: "Lists the signing keys (public parts only)", Args: cobra.NoArgs,
		RunE: run(false, func([]string) error { return c.keys() })}
	var now bool
	rotate := &cobra.Command{Use: "rotate [--now]", Short: "Publishes a new signing key, which signs after signing_key_prepublish (at once with --now); replaces a pending one", Args: cobra.NoArgs,
		RunE: run(true, func([]string) error { return c.rotate(now) })}
	rotate.Flags().BoolVar(&now, "now", false, "Sign with the new key at once, skipping pre-publication (resource servers that cache the JWKS refuse its tokens until they fetch it again)")
	keys.AddCommand(rotate)
	keys.AddCommand(&cobra.Command{Use: "retire <kid>", Short: "Stops a key verifying at once: every token it signed is refused (not the key that signs now: rotate --now first)", Args: cobra.ExactArgs(1),
		RunE: run(true, func(args []string) error { return c.retire(args[0]) })})
	root.AddCommand(keys)

	root.AddCommand(&cobra.Command{Use: "inspect <token> | -", Short: "Verifies a token and says what it is (- reads it from stdin)", Args: cobra.ExactArgs(1),
		RunE: run(false, func(args []string) error { return c.inspect(args[0]) })})
	root.AddCommand(&cobra.Command{Use: "backup <file>", Short: "Writes a consistent snapshot of the storage file while Caddy serves", Args: cobra.ExactArgs(1),
		RunE: run(false, func(args []string) error { return c.download("backup", args[0]) })})
	root.AddCommand(&cobra.Command{Use: "export <file> | -", Short: "Writes every record as JSON lines (secrets stay hashed; no signing keys)", Args: cobra.ExactArgs(1),
		RunE: run(false, func(args []string) error { return c.download("export", args[0]) })})
	var keepPrivileges bool
	imp := &cobra.Command{Use: "import <file> | - [--keep-privileges]",
		Short: "Adds the records of an export; never overwrites a different record; leaves out sessions, pending consents and codes", Args: cobra.ExactArgs(1),
		RunE: run(true, func(args []string) error { return c.importFile(args[0], keepPrivileges) })}
	imp.Flags().BoolVar(&keepPrivileges, "keep-privileges", false, "Keep clients that are trusted, introspect every token or use client_credentials (refused otherwise)")
	root.AddCommand(imp)
}

// offline, when set, answers requests from a storage file in this process.
var offline *handler

// openStorage opens the --storage file as a one-site handler.
func (c *cli) openStorage(writes bool) (func(), error) {
	open := bolt.OpenReadOnly
	if writes {
		open = bolt.Open
	}
	file, err := open(c.storagePath)
	if err != nil {
		return nil, err
	}
	if c.issuer == "" {
		if c.issuer, err = onlyIssuer(file); err != nil {
			file.Close()
			return nil, err
		}
	}
	store := file.ForIssuer(c.issuer)
	keys, err := storedKeys(store)
	if err != nil {
		file.Close()
		return nil, err
	}
	srv, err := endpoints.New(endpoints.Config{
		Issuer: c.issuer, Resources: []string{c.issuer},
		Storage: endpoints.StorageConfig{Store: store},
		Signing: endpoints.SigningConfig{Keys: keys, StoredKeys: true, KeyPrepublish: time.Hour},
		Tokens:  endpoints.TokenConfig{AccessTokenLifetime: time.Hour, ClockSkew: 30 * time.Second},
		SignIn:  endpoints.SignInConfig{Users: map[string]string{}},
	})
	if err != nil {
		file.Close()
		return nil, err
	}
	site := &Site{Server: srv, File: file, StoragePath: c.storagePath}
	offline = &handler{sites: func() []*Site { return []*Site{site} }}
	return func() { offline = nil; srv.Close(); file.Close() }, nil
}

// quietConfig is the --config file as JSON, adapted without Caddy's log
// lines (the command wants only its admin address); nil without --config
// or with --address.
func (c *cli) quietConfig() ([]byte, error) {
	if c.config == "" || c.address != "" {
		return nil, nil
	}
	body, err := os.ReadFile(c.config)
	if err != nil {
		return nil, fmt.Errorf("reading --config: %w", err)
	}
	name := c.adapter
	if base := filepath.Base(c.config); name == "" && (strings.HasPrefix(base, "Caddyfile") || filepath.Ext(base) == ".caddyfile") {
		name = "caddyfile"
	}
	if name == "" {
		return body, nil
	}
	adapter := caddyconfig.GetAdapter(name)
	if adapter == nil {
		return nil, fmt.Errorf("unrecognized config adapter %q", name)
	}
	out, _, err := adapter.Adapt(body, map[string]any{"filename": c.config})
	if err != nil {
		return nil, fmt.Errorf("adapting --config: %w", err)
	}
	return out, nil
}

// onlyIssuer is the issuer of a file that holds one authorization server.
func onlyIssuer(file storage.Backend) (string, error) {
	issuers, err := storage.Issuers(context.Background(), file)
	switch {
	case err != nil:
		return "", err
	case len(issuers) == 1:
		return issuers[0], nil
	case len(issuers) == 0:
		return "", errors.New("the file holds no authorization server's records yet: name one with --issuer")
	}
	return "", fmt.Errorf("the file holds several authorization servers; name one with --issuer: %s", strings.Join(issuers, ", "))
}

// storedKeys is the key set of a file (a throw-away one when it has none:
// then nothing verifies).
func storedKeys(store storage.Store) (*endpoints.KeySet, error) {
	keys, err := store.SigningKeys(context.Background())
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		return endpoints.NewKeySet(keys, time.Now())
	}
	secret := make([]byte, 32)
	copy(secret, fmt.Sprint(time.Now().UnixNano()))
	return endpoints.NewHMACKeySet(secret)
}

// call makes an API request and returns the answer's body; a failure is
// the API's one-line error.
func (c *cli) call(method, path string, query url.Values, body io.Reader) ([]byte, error) {
	if query == nil {
		query = url.Values{}
	}
	if c.issuer != "" && offline == nil {
		query.Set("issuer", c.issuer)
	}
	uri := "/oauth2/" + path
	if len(query) > 0 {
		uri += "?" + query.Encode()
	}
	if offline != nil {
		return offline.call(method, uri, body)
	}
	cfg, err := c.quietConfig()
	if err != nil {
		return nil, err
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(c.address, cfg, c.config, c.adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin API: %v", err)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, body)
	if err != nil && strings.HasPrefix(err.Error(), "performing request:") {
		return nil, fmt.Errorf("reaching Caddy's admin API at %s: %v; is Caddy running? Name its admin address with --address or its config with --config (or, when it is not running, open the storage file with --storage)", addr, strings.TrimPrefix(err.Error(), "performing request: "))
	}
	if err != nil {
		return nil, apiMessage(err)
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

var errorBody = regexp.MustCompile(`HTTP (\d+): (\{.*\})\s*$`)

// apiMessage turns "caddy responded with error: HTTP 404: {"error":…}"
// into the message.
func apiMessage(err error) error {
	if m := errorBody.FindStringSubmatch(err.Error()); m != nil {
		var body struct{ Error string }
		if json.Unmarshal([]byte(m[2]), &body) == nil && body.Error != "" {
			return fmt.Errorf("%s (HTTP %s)", body.Error, m[1])
		}
	}
	return err
}

// call serves one request in process, as the admin endpoint would.
func (h *handler) call(method, uri string, body io.Reader) ([]byte, error) {
	req := httptest.NewRequest(method, uri, body)
	rec := httptest.NewRecorder()
	if err := h.serve(rec, req); err != nil {
		var apiErr caddy.APIError
		if errors.As(err, &apiErr) {
			return nil, fmt.Errorf("%v (HTTP %d)", apiErr.Err, apiErr.HTTPStatus)
		}
		return nil, err
	}
	return rec.Body.Bytes(), nil
}

// show prints the JSON answer as is (--json), or decoded into v as a table.
func (c *cli) show(raw []byte, v any, header string, row func(tw io.Writer)) error {
	if c.json {
		_, err := c.out.Write(raw)
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	row(tw)
	return tw.Flush()
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) servers() error {
	raw, err := c.call(http.MethodGet, "", nil, nil)
	if err != nil {
		return err
	}
	var list []serverInfo
	return c.show(raw, &list, "ISSUER\tRESOURCES\tALG\tKID\tCLIENTS\tGRANTS\tSESSIONS\tSTORAGE", func(tw io.Writer) {
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.Issuer, strings.Join(s.Resources, " "), s.SigningAlg, s.KeyID, s.Clients, s.LiveGrants, s.LiveSessions, s.Storage)
		}
	})
}

func (c *cli) clients() error {
	raw, err := c.call(http.MethodGet, "clients", nil, nil)
	if err != nil {
		return err
	}
	var list []endpoints.ClientInfo
	return c.show(raw, &list, "CLIENT_ID\tNAME\tORIGIN\tGRANT TYPES\tAUTH\tCREATED\tLAST USED", func(tw io.Writer) {
		for _, cl := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cl.ID, dash(cl.Name), cl.Origin, strings.Join(cl.GrantTypes, " "), dash(strings.Join(cl.AuthMethods, ",")), when(cl.CreatedAt), when(cl.LastUsedAt))
		}
	})
}

func (c *cli) addClient(n endpoints.NewClient) error {
	if n.Name == "" {
		return errors.New("--name is required")
	}
	body, _ := json.Marshal(n)
	raw, err := c.call(http.MethodPost, "clients", nil, bytes.NewReader(body))
	if err != nil {
		return err
	}
	var created createdClient
	return c.show(raw, &created, "CLIENT_ID\tCLIENT_SECRET (shown once)", func(tw io.Writer) {
		fmt.Fprintf(tw, "%s\t%s\n", created.ID, dash(created.Secret))
	})
}

func (c *cli) deleteClient(id string) error {
	if _, err := c.call(http.MethodDelete, "clients/"+url.PathEscape(id), nil, nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(c.out, "deleted %s; its grants and live access tokens are revoked\n", id)
	}
	return nil
}

func (c *cli) grants(user, client string) error {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if client != "" {
		q.Set("client", client)
	}
	raw, err := c.call(http.MethodGet, "grants", q, nil)
	if err != nil {
		return err
	}
	var list []endpoints.GrantInfo
	return c.show(raw, &list, "ID\tUSER\tCLIENT\tSCOPE\tRESOURCE\tCREATED\tLAST USED\tEXPIRES", func(tw io.Writer) {
		for _, g := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.User, dash(g.ClientName+" ("+g.ClientID+")"), dash(g.Scope), g.Resource,
				when(g.CreatedAt), when(g.LastUsedAt), when(g.ExpiresAt))
		}
	})
}

func (c *cli) revoke(grant, user, client string) error {
	path, q := "grants", url.Values{}
	switch {
	case grant != "" && user == "" && client == "":
		path += "/" + url.PathEscape(grant)
	case grant == "" && (user == "") != (client == ""):
		q.Set("user", user)
		if client != "" {
			q.Del("user")
			q.Set("client", client)
		}
	default:
		return errors.New("give exactly one of --grant, --user and --client")
	}
	raw, err := c.call(http.MethodDelete, path, q, nil)
	if err != nil {
		return err
	}
	var n map[string]int
	if c.json {
		_, err := c.out.Write(raw)
		return err
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	what := "grant " + grant
	switch {
	case user != "":
		what = "grants of user " + user
	case client != "":
		what = "grants of client " + client
	}
	_, err = fmt.Fprintf(c.out, "revoked %d: the %s (refresh tokens, live access tokens, remembered consent)\n", n["revoked"], what)
	return err
}

func (c *cli) keys() error {
	raw, err := c.call(http.MethodGet, "keys", nil, nil)
	if err != nil {
		return err
	}
	var list []endpoints.KeyInfo
	return c.show(raw, &list, "KID\tALG\tCREATED\tACTIVATES\tRETIRED\tVERIFIES UNTIL\tSIGNING", func(tw io.Writer) {
		for _, k := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", k.ID, k.Algorithm, when(k.CreatedAt), when(k.ActivatesAt), when(k.RetiredAt), when(k.VerifyUntil), k.Signing)
		}
	})
}

func (c *cli) rotate(now bool) error {
	var q url.Values
	if now {
		q = url.Values{"now": {"true"}}
	}
	raw, err := c.call(http.MethodPost, "keys/rotate", q, nil)
	if err != nil {
		return err
	}
	var next struct {
		KID         string    `json:"kid"`
		ActivatesAt time.Time `json:"activates_at"`
	}
	return c.show(raw, &next, "NEW KID\tSIGNS FROM", func(tw io.Writer) { fmt.Fprintf(tw, "%s\t%s\n", next.KID, when(next.ActivatesAt)) })
}

func (c *cli) retire(kid string) error {
	body, _ := json.Marshal(map[string]string{"kid": kid})
	raw, err := c.call(http.MethodPost, "keys/retire", nil, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if c.json {
		_, err := c.out.Write(raw)
		return err
	}
	_, err = fmt.Fprintf(c.out, "retired %s: the tokens it signed are refused from now on\n", kid)
	return err
}

func (c *cli) inspect(token string) error {
	if token == "-" {
		in, err := io.ReadAll(io.LimitReader(os.Stdin, maxBody))
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(in))
	}
	body, _ := json.Marshal(map[string]string{"token": token})
	raw, err := c.call(http.MethodPost, "tokens/inspect", nil, bytes.NewReader(body))
	if err != nil {
		return err
	}
	var in endpoints.Inspection
	return c.show(raw, &in, "VALID\tKIND\tGRANT\tREASON", func(tw io.Writer) {
		fmt.Fprintf(tw, "%v\t%s\t%s\t%s\n", in.Valid, dash(in.Kind), dash(in.Grant), dash(in.Reason))
		if len(in.Claims) > 0 {
			claims, _ := json.Marshal(in.Claims)
			fmt.Fprintf(tw, "claims: %s\n", claims)
		}
	})
}

// download writes a backup or an export to a file (or stdout for "-").
func (c *cli) download(what, path string) error {
	raw, err := c.call(http.MethodGet, what, nil, nil)
	if err != nil {
		return err
	}
	if path == "-" {
		_, err = os.Stdout.Write(raw)
		return err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	fmt.Fprintf(c.out, "wrote %s (%d bytes)\n", path, len(raw))
	return nil
}

func (c *cli) importFile(path string, keepPrivileges bool) error {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	var query url.Values
	if keepPrivileges {
		query = url.Values{"keep_privileges": {"true"}}
	}
	raw, err := c.call(http.MethodPost, "import", query, in)
	if err != nil {
		return err
	}
	var n struct {
		Imported int            `json:"imported"`
		Skipped  map[string]int `json:"skipped"`
	}
	return c.show(raw, &n, "IMPORTED\tLEFT OUT", func(tw io.Writer) {
		var left []string
		for _, typ := range storage.ExportTypes {
			if k := n.Skipped[typ]; k > 0 {
				left = append(left, fmt.Sprintf("%d %s", k, typ))
			}
		}
		fmt.Fprintf(tw, "%d\t%s\n", n.Imported, dash(strings.Join(left, ", ")))
	})
}
