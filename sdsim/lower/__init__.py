"""Lowering: the paper's optimizations as rules turning traced ops into kernel calls (the plan)."""
