"""Training of sparse heads: losses and trainers."""
