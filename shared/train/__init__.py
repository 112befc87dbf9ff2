"""Training infrastructure: distribution, losses, identity embeddings."""
