"""CelebA-style attribute sources -> the attribute table."""
