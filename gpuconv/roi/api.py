"""Public roi functions (filled in by the roi family)."""
__all__: list[str] = []
