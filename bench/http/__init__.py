"""The HTTP API under load, and the request path's parts measured alone."""
