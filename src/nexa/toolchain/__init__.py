"""The native toolchain: the pinned llama.cpp source (source) and `nexa runtime build`, which compiles
llama-server for this machine (build) into a runtime that nexa.runtime.runtimes finds and chooses."""
