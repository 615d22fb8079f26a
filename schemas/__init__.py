"""Events, their msgpack encoding and the validation rules shared by every entry point.

This package imports nothing from the rest of runstream (see tests/unit/test_import_rules.py).
"""
