"""Reflection and self-correction (PARM++, shared/method.md section 3): failed clauses and critiques, the shapes
reflection model, critique-conditioned generators, and their training data and recipes."""
