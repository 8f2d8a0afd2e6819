"""The audio family (placeholder: the lead writes the family definition)."""
