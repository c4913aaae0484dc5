"""Small helpers that both apps use; nothing here knows about either app."""
