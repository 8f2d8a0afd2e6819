"""The audio family (placeholder docstring; the lead writes the real package module)."""
