"""Plugin and tool definitions, the registry with lifecycle and metrics, and the builtin plugin."""
