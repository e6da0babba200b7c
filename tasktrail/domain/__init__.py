"""The domain: what a task is and how it changes, in pure code (no web, database or token library).

The commands and the rules that decide them (`decide`), the events and their data, how events
fold into a task (`evolve`, `state`), the task's fields with their stored and served forms
(`fields`, `document`), and the event log's canonical encoding and hash chain (`encoding`,
`chain`, `event_record`). Everything else (storage, queries, the API) is built on it; it imports
nothing of theirs (import-linter checks it).
"""
