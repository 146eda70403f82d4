"""The HTTP router: FastAPI app, routes, schemas, errors."""
