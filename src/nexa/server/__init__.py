"""The HTTP router: the FastAPI app and its routes, the paths every dialect shares (chat, embed, the one
translated stream), the relay to workers, errors, auth and metrics. Request and answer types are nexa.wire."""
