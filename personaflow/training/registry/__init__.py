"""The model registry: candidates in the BentoML store (store.py), production as our own pointer file moved
only through the gate (pointer.py), and models loaded for serving and re-scoring (loading.py).

BentoML's `:latest` means "newest saved", not "approved", and open-source BentoML has no rollback, so
the production pointer is a JSON file we own. BentoML's usage tracking (it posts to the internet on every
save; this machine and CI have none) is turned off at the process edge (personaflow/core/tool_env.py).
"""
