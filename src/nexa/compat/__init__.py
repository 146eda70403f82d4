"""Request normalisation: Nexa and OpenAI request forms become llama.cpp server bodies. Pure, no I/O."""
