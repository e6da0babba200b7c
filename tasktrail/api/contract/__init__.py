"""The wire's contract: schemas, problem details (RFC 9457), the OpenAPI document."""
