"""Read-only functions over the read model and the log. Nothing here writes."""
