"""The NumPy reference: the oracle every kernel is tested against (design.md).

Deliberately simple and independent of the kernels' launch path (it never imports a launcher or
the kernel loader): each operation computes in float64 and casts back to the input dtype.
"""
