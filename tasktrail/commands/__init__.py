"""One handler per intent: load the task's stream, fold it, decide, append, project."""
