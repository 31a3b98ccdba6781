"""Schema revisions, oldest first; each is hand-written and never regenerated."""
