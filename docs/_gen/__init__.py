"""Build-time generators of the docs site's reference and benchmark pages (run by hooks.py)."""
