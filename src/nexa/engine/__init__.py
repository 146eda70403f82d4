"""The engine side: how a model becomes a running xllamacpp server in its own process."""
