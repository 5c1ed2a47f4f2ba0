"""Launch files and parameters of the CLASS stack (installed from the repository root)."""
