"""The write seam: a write's unit of work (one transaction) and its idempotency key."""
