"""Gradients of the conv functions, exported as gpuconv.grad.*."""
__all__: list[str] = []
