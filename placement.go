package oauth2server

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// The guard protects only what passes through it. A handler that answers
// requests itself (reverse_proxy, php_fastcgi, file_server, respond) and
// runs before oauth2_server, or a route that ends the chain or shares its
// group, hands protected requests to the upstream without a token. Such a
// configuration is refused at load.
//
// The check runs while the http app provisions its routes, so it reads
// two forms of the same tree: the routes already provisioned (those before
// this handler, as module instances) and the ones still being provisioned
// (this handler's own route and its ancestors, as raw JSON).

// routeView is a route as the placement check reads it.
type routeView struct {
	group    string
	terminal bool
	sets     []matcherSetView // none: every request
	handlers []handlerView
}

// matcherSetView is one matcher set: path and host matchers are read,
// any other kind might match any request.
type matcherSetView struct {
	paths, hosts []string // nil: no such matcher
	other        bool
}

// handlerView is a handler as the placement check reads it.
type handlerView struct {
	name    string
	answers bool        // it answers requests itself
	config  string      // of an oauth2_server: its issuer and resources as configured
	routes  []routeView // of a subroute
}

// target is a protected resource as a request reaches it.
type target struct{ host, path string }

// placementCheck finds what runs before an oauth2_server.
type placementCheck struct {
	config  string // its issuer and resources as configured (see handlerConfig)
	targets []target
	public  map[string]bool
}

// handlerConfig names an oauth2_server by its issuer and resources as
// configured (placeholders unresolved): two blocks with the same issuer
// (one per site) protect different resources.
func handlerConfig(issuer string, resources []string) string {
	return issuer + "\x00" + strings.Join(resources, "\x00")
}

// checkPlacement refuses a configuration in which something runs before
// this handler for requests it protects. Outside an http app (a config
// loaded by hand) there is nothing to check.
func (h *Handler) checkPlacement(ctx caddy.Context, rawIssuer string, rawResources []string) error {
	var app *caddyhttp.App
	for _, m := range ctx.Modules() {
		if a, ok := m.(*caddyhttp.App); ok {
			app = a
		}
	}
	if app == nil {
		return nil
	}
	c := placementCheck{config: handlerConfig(rawIssuer, rawResources), public: map[string]bool{}}
	for _, res := range h.Resources {
		if u, err := url.Parse(res); err == nil {
			c.targets = append(c.targets, target{strings.ToLower(u.Hostname()), strings.TrimSuffix(u.Path, "/")})
		}
	}
	for _, p := range h.Public {
		c.public[p] = true
	}
	for name, srv := range app.Servers {
		if problem := c.inRoutes(viewRoutes(srv.Routes), "server "+name); problem != "" {
			return fmt.Errorf("%s runs before oauth2_server (issuer %s) for the requests it protects, so they would reach the upstream without a token: "+
				"put oauth2_server first (in a route block, above the other handlers; and no `order oauth2_server` line, it orders itself before reverse_proxy), "+
				"or make the path public", problem, rawIssuer)
		}
	}
	return nil
}

// inRoutes looks for this handler in routes and returns what runs before
// it for protected requests, named by where it is; "" when nothing does
// (or the handler is not there).
func (c *placementCheck) inRoutes(routes []routeView, where string) string {
	for i, r := range routes {
		for j, hd := range r.handlers {
			if !c.holds(hd) {
				continue
			}
			for k, before := range routes[:i] {
				if !c.mayMatch(before) {
					continue
				}
				at := fmt.Sprintf("%s, route %d", where, k)
				switch {
				case before.terminal:
					return "a terminal route (" + at + ")"
				case before.group != "" && before.group == r.group:
					return "a route of the same group (" + at + ")"
				}
				if name := c.answering(before.handlers); name != "" {
					return name + " (" + at + ")"
				}
			}
			if name := c.answering(r.handlers[:j]); name != "" {
				return name + fmt.Sprintf(" (%s, route %d)", where, i)
			}
			if hd.name == "subroute" {
				if problem := c.inRoutes(hd.routes, fmt.Sprintf("%s, route %d, subroute", where, i)); problem != "" {
					return problem
				}
			}
		}
	}
	return ""
}

// holds reports whether a handler is this oauth2_server or a subroute
// that holds it.
func (c *placementCheck) holds(hd handlerView) bool {
	if hd.name == "oauth2_server" {
		return hd.config != "" && hd.config == c.config
	}
	for _, r := range hd.routes {
		for _, inner := range r.handlers {
			if c.holds(inner) {
				return true
			}
		}
	}
	return false
}

// answering names the first of handlers that answers protected requests
// itself, directly or in a subroute; "" for none.
func (c *placementCheck) answering(handlers []handlerView) string {
	for _, hd := range handlers {
		if hd.answers {
			return hd.name
		}
		for _, r := range hd.routes {
			if c.mayMatch(r) {
				if name := c.answering(r.handlers); name != "" {
					return name
				}
			}
		}
	}
	return ""
}

// mayMatch reports whether a route may match a request to a protected
// resource.
func (c *placementCheck) mayMatch(r routeView) bool {
	if len(r.sets) == 0 {
		return true
	}
	for _, s := range r.sets {
		for _, t := range c.targets {
			if s.other || (s.hosts == nil || anyHost(s.hosts, t.host)) && (s.paths == nil || c.anyPath(s.paths, t.path)) {
				return true
			}
		}
	}
	return false
}

// anyHost reports whether a host matcher's patterns may match host.
func anyHost(patterns []string, host string) bool {
	for _, p := range patterns {
		p = strings.ToLower(p)
		switch {
		case strings.Contains(p, "{"), p == "*", p == host:
			return true
		case strings.HasPrefix(p, "*."):
			if _, rest, ok := strings.Cut(host, "."); ok && rest == p[2:] {
				return true
			}
		}
	}
	return false
}

// anyPath reports whether a path matcher's patterns may match a path of
// the resource at prefix ("" for a whole origin) that is not public and
// not under /.well-known/.
func (c *placementCheck) anyPath(patterns []string, prefix string) bool {
	for _, p := range patterns {
		p = strings.ToLower(p)
		literal, _, glob := strings.Cut(p, "*")
		if c.public[p] || strings.HasPrefix(literal, "/.well-known/") {
			continue
		}
		switch {
		case prefix == "", strings.Contains(p, "{"):
			return true
		case literal == prefix || strings.HasPrefix(literal, prefix+"/"):
			return true // the pattern lies within the resource
		case glob && strings.HasPrefix(prefix, literal):
			return true // a wildcard reaches into it
		}
	}
	return false
}

// viewRoutes reads routes, each in the form it has now.
func viewRoutes(routes caddyhttp.RouteList) []routeView {
	out := make([]routeView, len(routes))
	for i, r := range routes {
		v := routeView{group: r.Group, terminal: r.Terminal}
		if r.MatcherSetsRaw != nil {
			v.sets = rawMatcherSets(r.MatcherSetsRaw)
		} else {
			v.sets = matcherSets(r.MatcherSets)
		}
		if r.HandlersRaw != nil {
			for _, raw := range r.HandlersRaw {
				v.handlers = append(v.handlers, rawHandler(raw))
			}
		} else {
			for _, h := range r.Handlers {
				v.handlers = append(v.handlers, handler(h))
			}
		}
		out[i] = v
	}
	return out
}

func matcherSets(sets caddyhttp.MatcherSets) []matcherSetView {
	var out []matcherSetView
	for _, set := range sets {
		var v matcherSetView
		for _, m := range set {
			switch m := m.(type) {
			case *caddyhttp.MatchPath:
				v.paths = append(v.paths, (*m)...)
			case caddyhttp.MatchPath:
				v.paths = append(v.paths, m...)
			case *caddyhttp.MatchHost:
				v.hosts = append(v.hosts, (*m)...)
			case caddyhttp.MatchHost:
				v.hosts = append(v.hosts, m...)
			default:
				v.other = true
			}
		}
		out = append(out, v)
	}
	return out
}

func rawMatcherSets(sets caddyhttp.RawMatcherSets) []matcherSetView {
	var out []matcherSetView
	for _, set := range sets {
		var v matcherSetView
		for name, raw := range set {
			var list []string
			switch {
			case name == "path" && json.Unmarshal(raw, &list) == nil:
				v.paths = append(v.paths, list...)
			case name == "host" && json.Unmarshal(raw, &list) == nil:
				v.hosts = append(v.hosts, list...)
			default:
				v.other = true
			}
		}
		out = append(out, v)
	}
	return out
}

// handler reads a provisioned handler.
func handler(h caddyhttp.MiddlewareHandler) handlerView {
	switch h := h.(type) {
	case *reverseproxy.Handler:
		return handlerView{name: "reverse_proxy", answers: len(h.HandleResponse) == 0}
	case *fileserver.FileServer:
		return handlerView{name: "file_server", answers: true}
	case *caddyhttp.StaticResponse, caddyhttp.StaticResponse:
		return handlerView{name: "static_response (respond)", answers: true}
	case *caddyhttp.Subroute:
		return handlerView{name: "subroute", routes: viewRoutes(h.Routes)}
	case *Handler:
		return handlerView{name: "oauth2_server"}
	}
	name := ""
	if m, ok := h.(caddy.Module); ok {
		name = m.CaddyModule().ID.Name()
	}
	return handlerView{name: name}
}

// rawHandler reads a handler not yet provisioned.
func rawHandler(raw json.RawMessage) handlerView {
	var h struct {
		Handler        string              `json:"handler"`
		Issuer         string              `json:"issuer"`
		Resources      []string            `json:"resources"`
		HandleResponse json.RawMessage     `json:"handle_response"`
		Routes         caddyhttp.RouteList `json:"routes"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return handlerView{}
	}
	v := handlerView{name: h.Handler}
	switch h.Handler {
	case "reverse_proxy":
		v.answers = len(h.HandleResponse) == 0
	case "file_server":
		v.answers = true
	case "static_response":
		v.name, v.answers = "static_response (respond)", true
	case "subroute":
		v.routes = viewRoutes(h.Routes)
	case "oauth2_server":
		v.config = handlerConfig(h.Issuer, h.Resources)
	}
	return v
}
