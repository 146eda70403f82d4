"""Wire types: each API dialect's request and response shapes, one module per dialect.

They sit below `compat/` (which translates them into engine bodies) and `server/` (whose
routes accept and return them), so neither has to import the other for a type."""
