"""The runtime: mailbox, job actor and state machine, ToolRunner, scheduler, supervisor, event bus."""
