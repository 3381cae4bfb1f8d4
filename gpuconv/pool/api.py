"""Public pool functions (filled in by the pool family)."""
__all__: list[str] = []
