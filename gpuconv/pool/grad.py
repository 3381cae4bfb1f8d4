"""Gradients of the pool functions, exported as gpuconv.grad.*."""
__all__: list[str] = []
