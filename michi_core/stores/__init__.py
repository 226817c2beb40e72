"""What Michi keeps for the user in SQLite: conversations, voices (with their checks) and documents (RAG)."""
