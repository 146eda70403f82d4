"""The worker process: how a manifest becomes a running engine, xllamacpp's server in process or a
llama-server binary the worker supervises; both speak llama-server's HTTP API on loopback."""
