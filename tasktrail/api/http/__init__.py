"""HTTP plumbing: wire limits, HEAD, fair share, request context, the process's own metrics."""
