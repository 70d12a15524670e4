"""A/B tests of two models at serving: stable arms, exposures, attribution, an always-valid report."""
