"""Core math: pure, typed tensor functions, one formula per function."""
