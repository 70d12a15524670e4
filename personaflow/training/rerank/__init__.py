"""After retrieval: candidate pools and the DeepFM re-ranker over them, and the repeat-buy blend."""
