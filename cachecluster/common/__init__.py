"""Pieces shared by every component: errors, sizes, paths."""
