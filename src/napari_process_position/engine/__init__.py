"""The engine: process pool, a position's run, streaming, the iohub-compatible entry point."""
