"""The HTTP API: app factory, routers, middleware, authentication, rate limiting."""
