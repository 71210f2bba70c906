"""The lab around the gan-cot library: the baselines it is compared with, the comparison and its intervals' tables,
the oracle, the benchmark and the reliability harness, and their commands. It depends on ``gan_cot``; the library
never imports from here (``tests/test_imports.py`` checks it)."""
