"""Pure translation between wire shapes, no I/O: each dialect's requests into llama.cpp server bodies, and
the engine's answers and stream chunks (a `translator.Translator` each) back into the dialect's. Media is
read and checked by nexa.media; what a model can do comes from nexa.store.facts."""
