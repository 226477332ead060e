"""Cohesive blocks of healthledger.settings, each imported whole by it."""
