"""The `nexa` command: one module per command group."""
