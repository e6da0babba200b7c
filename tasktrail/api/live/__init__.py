"""The live feed: one hub per process that wakes every open event stream (SSE)."""
