"""Helpers both test suites use (the infrastructure suite in ``tests/`` and the service
suite in ``services/app/tests/``), which cannot import each other's ``tests`` packages.

Importable from the repository root (on ``sys.path`` through the editable install);
never shipped: the wheel holds ``groundwork/`` only (``tests/test_packaging.py``), so
nothing here may be imported by shipped code.
"""
