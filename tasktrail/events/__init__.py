"""The event store: a user's stream locked, a task's stream read, events appended with the chain
(the events themselves, their encoding and the chain are the domain's: tasktrail/domain/)."""
