"""The event log: event types, their canonical encoding, the hash chain and the event store."""
