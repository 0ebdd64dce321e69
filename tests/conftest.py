import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# No persistent compilation cache in tests (twnn_jax/compile_cache.py): nothing read from or written to the
# user's home; a test about the cache sets its own directory.
os.environ["TWNN_COMPILE_CACHE"] = "0"
