"""The HTTP surface: app factory, routes, auth, problem details."""
