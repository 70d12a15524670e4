"""personaflow: nightly user profiles and recommenders for e-commerce shops."""

__version__ = "0.1.0"
