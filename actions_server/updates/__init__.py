"""Template updates: reproducible renders (`.cruft.json`, template history) and three-way merges."""
