"""Gradients of the roi functions, exported as gpuconv.grad.*."""
__all__: list[str] = []
