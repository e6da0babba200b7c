"""Who is asking: bearer tokens (JWT) checked against a shared secret or a JWK set."""
