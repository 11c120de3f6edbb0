"""The runtime: mailbox, job actor + state machine, ToolRunner, scheduler, supervisor, events."""
