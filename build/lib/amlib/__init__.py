"""amlib: adversarial missingness and influence manipulation, reproduced."""
__version__ = "0.1.0"
