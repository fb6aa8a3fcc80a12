"""The Temporal wrappers: the activities the worker registers, thin shells around the services
in `activities/` (one frozen dataclass in; out, only what a workflow reads)."""
