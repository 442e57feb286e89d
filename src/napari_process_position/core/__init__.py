"""What a spawned worker needs and nothing more: records, transform references, budgets.

Imports nothing else of this package (an import-linter contract): standard
library and numpy only.
"""
