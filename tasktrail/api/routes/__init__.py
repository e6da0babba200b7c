"""The route table and its handlers, with what they read off a request (deps, writes, streams)."""
